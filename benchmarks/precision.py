"""Train-step time in float32 against bfloat16 compute (``config.model.compute_dtype``), one run.

    python benchmarks/precision.py                      # cpu scale, R2P and S4, 2 cores
    python benchmarks/precision.py --scale paper --steps 30   # a GPU
    python benchmarks/precision.py --smoke              # seconds: tiny scale, 2 steps

For each strategy both steps are compiled in the same process and timed interleaved (rounds
of ``--steps`` steps each, alternating dtypes, so load drifts hit both alike) on
contract-shaped random batches (the step alone, no input pipeline). Per strategy and dtype:
median step seconds over the rounds' per-step means and steps/s; per strategy
``bf16_vs_f32`` = bf16 steps/s ÷ f32 steps/s (> 1: bf16 is faster) and ``bf16_vs_f32_min``,
the same from each dtype's fastest round. Written to
``benchmarks/figures/<machine>_<date>/precision.json`` (``--out`` overrides). Report
``uptime`` with it: the machine is shared.

Accuracy is a separate, long measurement (validation EPE at equal steps, 2 seeds); the
command, at the cpu scale, is::

    python -m experiments.sweep \\
        --config experiments/configs/reproduce.py:strategy=R2P,scale=cpu \\
        --config.data.data_dir=results/reproduce/cpu/data/tfds \\
        --root workdirs/precision_R2P \\
        --sweep model.compute_dtype=float32,bfloat16 --sweep seed=0,1

(and the same with ``strategy=RC2CHP_poe``); ``<root>/sweep.md`` holds the validation EPE
(``mean_epe_mm``) of each run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import _bench  # noqa: E402  (benchmarks/, the script's folder)

from experiments.configs import reproduce  # noqa: E402
from handvae.data import spec  # noqa: E402
from handvae.models import vae  # noqa: E402
from handvae.training import sharding, state as state_lib, step as step_lib  # noqa: E402

DTYPES = ("float32", "bfloat16")


class _Step:
    """A compiled train step of ``config`` with its own state and two resident batches."""

    def __init__(self, config):
        self.mesh = sharding.make_mesh()
        model = vae.build_model(config.model)
        self.state = sharding.replicate(state_lib.create_train_state(config, model), self.mesh)
        self.batches = [sharding.shard_batch(spec.dummy_batch(
            config.batch_size, config.data.image_size, config.data.num_points,
            config.data.heatmap_size, seed=i), self.mesh) for i in range(2)]
        start = time.perf_counter()
        self.step = step_lib.make_train_step(config, self.mesh).lower(
            self.state, self.batches[0]).compile()
        self.compile_seconds = time.perf_counter() - start
        self.run(1)

    def run(self, steps: int) -> float:
        """Seconds per step over ``steps`` steps (dispatched back to back, then waited)."""
        start = time.perf_counter()
        for i in range(steps):
            self.state, metrics = self.step(self.state, self.batches[i % 2])
        jax.block_until_ready(metrics)
        self.loss = float(metrics["loss"])
        return (time.perf_counter() - start) / steps


def compare(config, *, steps: int, rounds: int) -> dict:
    """Interleaved timing of ``config`` in both dtypes; returns the record of one strategy."""
    runs = {}
    for dtype in DTYPES:
        variant = config.copy_and_resolve_references()
        variant.model.compute_dtype = dtype
        runs[dtype] = _Step(variant)
    times: dict[str, list[float]] = {dtype: [] for dtype in DTYPES}
    for _ in range(rounds):
        for dtype in DTYPES:
            times[dtype].append(runs[dtype].run(steps))
    record = {"strategy": config.model.strategy, "batch_size": config.batch_size,
              "image_size": config.data.image_size, "steps_per_round": steps,
              "rounds": rounds}
    for dtype in DTYPES:
        seconds = float(np.median(times[dtype]))
        record[dtype] = {"step_seconds_median": seconds, "steps_per_sec": 1.0 / seconds,
                         "step_seconds_min": float(np.min(times[dtype])),
                         "step_seconds_per_round": times[dtype],
                         "compile_seconds": runs[dtype].compile_seconds,
                         "final_loss": runs[dtype].loss}
    record["bf16_vs_f32"] = (record["bfloat16"]["steps_per_sec"]
                             / record["float32"]["steps_per_sec"])
    # The fastest round of each: the least disturbed by other work on a shared machine.
    record["bf16_vs_f32_min"] = (record["float32"]["step_seconds_min"]
                                 / record["bfloat16"]["step_seconds_min"])
    return record


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="cpu", choices=sorted(reproduce.SCALES))
    parser.add_argument("--strategies", default="R2P,RC2CHP_poe")
    parser.add_argument("--steps", type=int, default=5, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per dtype")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds: tiny scale, R2P only, 1 round of 2 steps, no file "
                             "unless --out")
    parser.add_argument("--out", default=None, help="JSON path (default: figures dir)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.scale, args.strategies, args.steps, args.rounds = "tiny", "R2P", 2, 1
    results = {"device_kind": jax.devices()[0].device_kind, "devices": jax.device_count(),
               "jax": jax.__version__, "scale": args.scale,
               "load_average": list(os.getloadavg()), "strategies": []}
    for strategy in args.strategies.split(","):
        config = reproduce.get_config(f"strategy={strategy},scale={args.scale}")
        record = compare(config, steps=args.steps, rounds=args.rounds)
        results["strategies"].append(record)
        print(f"{strategy} ({args.scale}): float32 {record['float32']['steps_per_sec']:.2f} "
              f"steps/s, bfloat16 {record['bfloat16']['steps_per_sec']:.2f} steps/s, "
              f"bf16/f32 = {record['bf16_vs_f32']:.2f}x (fastest rounds "
              f"{record['bf16_vs_f32_min']:.2f}x)", flush=True)
    results["load_average_end"] = list(os.getloadavg())
    if not args.smoke or args.out:   # a smoke run writes only where it is told to
        _bench.write_figures(results, args.out, "precision.json")
    return results


if __name__ == "__main__":
    main()
