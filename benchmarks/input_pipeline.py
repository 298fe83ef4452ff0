"""Input-pipeline throughput per strategy key set, and how long a train step waits on it.

    python -m data_prep.synthetic --format rhd --out data/synthetic/rhd --num-train 1000 \\
        --num-eval 100 --seed 0
    python -m data_prep.build --dataset rhd --config synthetic \\
        --manual_dir data/synthetic/rhd --data_dir data/tfds
    python benchmarks/input_pipeline.py --data_dir data/tfds [--strategies R2P,RC2CHP_poe]
    python benchmarks/input_pipeline.py --data_dir data/tfds --smoke --out /tmp/pipeline.json

On the demo config (``experiments/configs/demo.py``, augmentation ON), for each strategy:

* ``pipeline_examples_per_s``: ``train_batches`` with the strategy's keys
  (:func:`handvae.data.spec.required_keys`), batches 1…N of a fresh stream (first epoch: every
  example is read from disk once), and again after one epoch (``_warm``, per-example caches
  filled) — the step is not running;
* with ``--steps K`` (default 120): the strategy's jitted train step (random init) consumes the
  same stream for K steps as ``experiments.train`` does (``next`` → shard → step → block); the
  share of wall time spent inside ``next`` is ``data_wait_fraction`` (the trainer's metric), the
  target being ≤ 0.05; ``step_examples_per_s`` is what the step alone consumes (timed on one
  resident batch in the same run).

Results go to ``results/benchmarks/input_pipeline.json``. Report ``uptime`` with the figures:
the machine is shared. ``--smoke`` (R2P on the demo config's ``tiny`` variant, 2 batches, 3
steps) checks in seconds that the script runs; ``make test`` runs it.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import _bench  # noqa: E402  (benchmarks/, the script's folder)
from experiments.configs import demo  # noqa: E402
from handvae.data import pipeline, spec  # noqa: E402
from handvae.data import source as source_lib  # noqa: E402
from handvae.models import registry  # noqa: E402


def strategy_keys(strategy: str) -> tuple[str, ...] | None:
    """The strategy's training keys, or None (all keys) where the pipeline predates ``keys``."""
    if not hasattr(spec, "required_keys"):
        return None
    record = registry.get_strategy(strategy)
    return spec.required_keys(tuple(record.targets), bool(record.uses_cloud_input),
                              evaluation=False)


def _stream(config, keys, start_step: int = 0):
    kwargs = {"keys": keys} if "keys" in inspect.signature(pipeline.train_batches).parameters \
        else {}
    return pipeline.train_batches(config.data, config.batch_size, seed=0, start_step=start_step,
                                  **kwargs)


def pipeline_rate(config, keys, num_batches: int, warm_batches: int) -> dict:
    """examples/s over batches 1..num_batches, then over the next batches after ``warm``."""
    iterator = _stream(config, keys)
    try:
        next(iterator)
        start = time.perf_counter()
        for _ in range(num_batches):
            next(iterator)
        cold = num_batches * config.batch_size / (time.perf_counter() - start)
        for _ in range(max(0, warm_batches - num_batches - 1)):
            next(iterator)
        start = time.perf_counter()
        for _ in range(num_batches):
            next(iterator)
        warm = num_batches * config.batch_size / (time.perf_counter() - start)
    finally:
        iterator.close()
    return {"pipeline_examples_per_s": round(cold, 1),
            "pipeline_examples_per_s_warm": round(warm, 1)}


def step_wait(config, keys, steps: int, epoch_steps: int) -> dict:
    """The trainer's loop on this stream: data_wait_fraction, and the step's own rate."""
    import jax

    from handvae.models import vae
    from handvae.training import sharding
    from handvae.training import state as state_lib
    from handvae.training import step as step_lib

    mesh = sharding.make_mesh()
    model = vae.build_model(config.model)
    state = sharding.replicate(state_lib.create_train_state(config, model), mesh)
    train_step = step_lib.make_train_step(config, mesh)
    iterator = _stream(config, keys)
    try:
        first = sharding.shard_batch(next(iterator), mesh)
        state, metrics = train_step(state, first)       # compile
        jax.block_until_ready(metrics)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            state, metrics = train_step(state, first)
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - start)
        step_seconds = float(np.median(times))
        waits, totals = [], []
        for _ in range(steps):
            start = time.perf_counter()
            batch = next(iterator)
            waits.append(time.perf_counter() - start)
            state, metrics = train_step(state, sharding.shard_batch(batch, mesh))
            jax.block_until_ready(metrics)
            totals.append(time.perf_counter() - start)
    finally:
        iterator.close()
    waits, totals = np.array(waits), np.array(totals)
    after = slice(min(epoch_steps, steps - 1), None)
    return {"step_examples_per_s": round(config.batch_size / step_seconds, 1),
            "steps": steps,
            "data_wait_fraction": round(float(waits.sum() / totals.sum()), 4),
            "data_wait_fraction_after_first_epoch": round(
                float(waits[after].sum() / totals[after].sum()), 4),
            "loop_steps_per_s": round(steps / float(totals.sum()), 2)}


# --smoke: the script's code paths in seconds (tests/benchmarks/test_benchmarks_smoke.py).
SMOKE = {"strategies": "R2P", "num_batches": 2, "steps": 3, "tiny": True}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=os.environ.get("HANDVAE_DATA_DIR", "data/tfds"))
    parser.add_argument("--strategies", default=",".join(registry.STRATEGIES))
    parser.add_argument("--num_batches", type=int, default=20)
    parser.add_argument("--steps", type=int, default=120, help="0: pipeline rates only")
    parser.add_argument("--num_workers", type=int, default=None)
    parser.add_argument("--no_augment", action="store_true")
    parser.add_argument("--tiny", action="store_true",
                        help="the demo config's tiny variant (32-px crops, tiny widths, batch 4)")
    parser.add_argument("--out", default="results/benchmarks/input_pipeline.json")
    args = _bench.parse_args(parser, argv, SMOKE)

    result: dict = {"cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
                    "augment": not args.no_augment, "smoke": args.smoke, "tiny": args.tiny,
                    "strategies": {}}
    for strategy in args.strategies.split(","):
        config = demo.get_config(f"strategy={strategy}" + (",tiny" if args.tiny else ""))
        config.data.data_dir, config.data.augment = args.data_dir, not args.no_augment
        if args.num_workers is not None:
            config.data.num_workers = args.num_workers
        size = len(source_lib.load_source(config.data, config.data.train_split))
        epoch_steps = -(-size // config.batch_size)
        keys = strategy_keys(strategy)
        figures = {"keys": list(keys) if keys else "all", "batch_size": config.batch_size,
                   "image_size": config.data.image_size, "train_examples": size}
        figures.update(pipeline_rate(config, keys, args.num_batches, epoch_steps + 1))
        if args.steps:
            figures.update(step_wait(config, keys, args.steps, epoch_steps))
        figures["load_average_1min"] = round(os.getloadavg()[0], 2)
        result["strategies"][strategy] = figures
        print(strategy, json.dumps(figures), flush=True)
    _bench.write_figures(result, args.out, "input_pipeline.json")
    return result


if __name__ == "__main__":
    main()
