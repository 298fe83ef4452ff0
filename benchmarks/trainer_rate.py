"""The trainer's rate against its step alone, per strategy and input path, in one run.

    python -m data_prep.synthetic --format rhd --out /tmp/x/raw --num-train 300 --num-eval 30
    python -m data_prep.build --dataset rhd --config synthetic --manual_dir /tmp/x/raw \\
        --data_dir /tmp/x/tfds
    python benchmarks/trainer_rate.py --data_dir /tmp/x/tfds            # cpu scale, 2 cores
    python benchmarks/trainer_rate.py --data_dir DIR --size paper --steps 200   # a GPU host
    python benchmarks/trainer_rate.py --smoke       # seconds: tiny scale on the dummy data

For each strategy (``--strategies``, default R2P and S4) and input path (``--pipelines``):
``host`` is today's path (each process prepares an example on first use and keeps up to
``data.cache_mb`` of them in memory), ``decoded_cache`` reads the memory-mapped decoded cache
(:mod:`handvae.data.decoded_cache`, built once before the timing; its build time is reported),
``device`` ships that cache's uint8 rows and augments them inside the jitted step
(``data.augment_on="device"``, :mod:`handvae.data.device_augment`; with ``--interleave`` also
timed alone on one resident raw batch, ``device_step_only_steps_per_s``),
one fresh child process per record (so peak RSS is that record's; ``--repeats R`` runs every
record R times, alternating the order of the input paths, and keeps each figure's median, the
single runs under ``runs``: on a shared machine the load moves between children). In it, as
the trainer does
(``handvae.training.loop``): the pipeline is opened, the jitted train step compiled on the
first batch, then ``--steps`` steps are timed (``next`` → shard → step; the time inside
``next`` is the data wait); then the pipeline is closed and the same compiled step is timed
alone on one resident batch. Each record: ``device_kind``, ``strategy``, ``size``,
``pipeline``, ``trainer_steps_per_s``, ``step_only_steps_per_s``, ``data_wait_fraction``,
``trainer_vs_step_only``, ``host_peak_rss_bytes`` (the trainer process) and
``workers_peak_rss_bytes`` (the largest worker process, ``worker_kind="processes"``), with
the cache's ``cache_bytes_per_example``.

``--interleave`` (what a shared machine needs): per strategy ONE process compiles the step
once, opens both input paths and then alternates rounds of ``--steps`` steps between them and
the step alone (the order rotating each round, ``--repeats`` rounds), timing only each round's
steps after its first ``PREFETCH_BATCHES + 1`` (the other path's producer has refilled its
queue by then, so every counted step is steady state). Load drift then hits every path alike;
the peak RSS is the process's, both paths together (``rss_scope``). Written to
``benchmarks/figures/<machine>_<date>/trainer_rate.json`` (``--out`` overrides); the full-size
cache estimates (RHD 41,258 and STB 30,000 frames) are printed and saved with it. The machine
is shared: the 1-minute load average is recorded at the start and end of every record.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import _bench  # noqa: E402  (benchmarks/, the script's folder; it loads no JAX)

PIPELINES = ("host", "decoded_cache", "device")
FULL_SIZE_FRAMES = {"RHD": 41_258, "STB": 30_000}


def _config(strategy: str, size: str, pipeline: str, args):
    from experiments.configs import reproduce

    config = reproduce.get_config(f"strategy={strategy},scale={size}")
    config.data.data_dir = args.data_dir
    config.data.decoded_cache = pipeline in ("decoded_cache", "device")
    config.data.augment_on = "device" if pipeline == "device" else "host"
    config.data.decoded_cache_dir = args.cache_dir
    if args.cache_mb >= 0:
        config.data.cache_mb = args.cache_mb
    if args.worker_kind:
        config.data.worker_kind = args.worker_kind
    if args.num_workers > 0:
        config.data.num_workers = args.num_workers
    return config


def _step_and_batches(config, strategy: str, mesh):
    """The jitted step and the training batches of ``config``'s input path, as the trainer
    builds them (``handvae.training.loop``): on the ``device`` path the pipeline ships raw
    uint8 rows and the step augments them first (``handvae.data.device_augment``)."""
    from handvae.data import device_augment
    from handvae.data import pipeline as pipeline_lib
    from handvae.models import registry
    from handvae.training import step as step_lib

    keys = registry.get_strategy(strategy).batch_keys()
    on_device = device_augment.resolve_augment_on(config.data) == "device"
    prepare = (device_augment.make_batch_fn(config.data, seed=0, keys=keys) if on_device
               else None)
    return (step_lib.make_train_step(config, mesh, prepare_batch=prepare),
            pipeline_lib.train_batches(config.data, config.batch_size, seed=0, keys=keys,
                                       raw=on_device))


def measure(strategy: str, size: str, pipeline: str, args) -> dict:
    """One record, in this process (see the module docstring)."""
    import jax
    import numpy as np

    from handvae.data import decoded_cache
    from handvae.models import vae
    from handvae.training import sharding, state as state_lib

    config = _config(strategy, size, pipeline, args)
    load_start = os.getloadavg()[0]
    record = {"device_kind": jax.devices()[0].device_kind, "strategy": strategy, "size": size,
              "pipeline": pipeline, "batch_size": config.batch_size,
              "image_size": config.data.image_size, "num_workers": config.data.num_workers,
              "worker_kind": config.data.worker_kind, "cache_mb": config.data.cache_mb,
              "devices": jax.device_count(), "timed_steps": args.steps}
    if pipeline in ("decoded_cache", "device"):
        start = time.perf_counter()
        cache = decoded_cache.open_or_build(config.data, config.data.train_split,
                                            config.data.image_size,
                                            num_workers=config.data.num_workers)
        if cache is None:
            raise RuntimeError("the decoded cache could not be kept (see the message above)")
        record.update(cache_seconds_to_open_or_build=time.perf_counter() - start,
                      cache_build_seconds=cache.manifest.get("build_seconds"),
                      cache_bytes=cache.nbytes(),
                      cache_bytes_per_example=cache.nbytes() / len(cache),
                      cache_directory=cache.directory)
    mesh = sharding.make_mesh()
    model = vae.build_model(config.model)
    state = sharding.replicate(state_lib.create_train_state(config, model), mesh)
    train_step, batches = _step_and_batches(config, strategy, mesh)
    try:
        start = time.perf_counter()
        batch = next(batches)
        state, metrics = train_step(state, sharding.shard_batch(batch, mesh))
        jax.block_until_ready(metrics)
        record["first_step_seconds"] = time.perf_counter() - start   # compile + first batch
        wait, start = 0.0, time.perf_counter()
        for _ in range(args.steps):
            wait_start = time.perf_counter()
            batch = next(batches)
            wait += time.perf_counter() - wait_start
            state, metrics = train_step(state, sharding.shard_batch(batch, mesh))
        jax.block_until_ready(metrics)
        elapsed = time.perf_counter() - start
    finally:
        batches.close()
    resident = sharding.shard_batch(batch, mesh)
    state, metrics = train_step(state, resident)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(args.steps):
        state, metrics = train_step(state, resident)
    jax.block_until_ready(metrics)
    step_only = time.perf_counter() - start
    record.update(
        trainer_steps_per_s=args.steps / elapsed, step_only_steps_per_s=args.steps / step_only,
        data_wait_fraction=wait / elapsed,
        host_peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        workers_peak_rss_bytes=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
        final_loss=float(np.asarray(metrics["loss"])),
        load_average_start=load_start, load_average_end=os.getloadavg()[0])
    record["trainer_vs_step_only"] = (record["trainer_steps_per_s"]
                                      / record["step_only_steps_per_s"])
    return record


def interleaved(strategy: str, size: str, args) -> list[dict]:
    """Both input paths and the step alone, timed in alternating rounds in this process."""
    import jax
    import numpy as np

    from handvae.data import decoded_cache, prefetch
    from handvae.models import vae
    from handvae.training import sharding, state as state_lib

    configs = {p: _config(strategy, size, p, args) for p in args.pipelines.split(",")}
    configs.setdefault("decoded_cache", _config(strategy, size, "decoded_cache", args))
    config = configs["host"]
    load_start = os.getloadavg()[0]
    cache = decoded_cache.open_or_build(configs["decoded_cache"].data, config.data.train_split,
                                        config.data.image_size,
                                        num_workers=config.data.num_workers)
    if cache is None:
        raise RuntimeError("the decoded cache could not be kept (see the message above)")
    mesh = sharding.make_mesh()
    model = vae.build_model(config.model)
    state = sharding.replicate(state_lib.create_train_state(config, model), mesh)
    pipelines = tuple(p for p in PIPELINES if p in args.pipelines.split(","))
    steps, streams = {}, {}
    for p in pipelines:
        steps[p], streams[p] = _step_and_batches(configs[p], strategy, mesh)
    skip = prefetch.PREFETCH_BATCHES + 1
    # step_only: the host path's step on one resident batch; device_step_only: the device
    # path's step (augmentation included) on one resident raw batch.
    paths = (*pipelines, "step_only") + (("device_step_only",) if "device" in steps else ())
    totals = {p: {"elapsed": 0.0, "wait": 0.0, "steps": 0} for p in paths}
    try:
        resident = {}
        for p, stream in streams.items():    # every step compiled, its producer started
            batch = sharding.shard_batch(next(stream), mesh)
            state, metrics = steps[p](state, batch)
            jax.block_until_ready(metrics)
            resident[p] = batch
            next(stream)
        for round_index in range(max(1, args.repeats)):
            shift = round_index % len(paths)
            for path in paths[shift:] + paths[:shift]:
                for i in range(args.steps + skip):
                    if i == skip:
                        jax.block_until_ready(metrics)
                        start, wait = time.perf_counter(), 0.0
                    wait_start = time.perf_counter()
                    if path.endswith("step_only"):
                        runs_on = "device" if path == "device_step_only" else "host"
                        sharded = resident[runs_on]
                    else:
                        runs_on = path
                        sharded = sharding.shard_batch(next(streams[path]), mesh)
                    if i >= skip:
                        wait += time.perf_counter() - wait_start
                    state, metrics = steps[runs_on](state, sharded)
                jax.block_until_ready(metrics)
                totals[path]["elapsed"] += time.perf_counter() - start
                totals[path]["wait"] += wait
                totals[path]["steps"] += args.steps
    finally:
        for stream in streams.values():
            stream.close()
    step_only = totals["step_only"]["steps"] / totals["step_only"]["elapsed"]
    records = []
    for path in pipelines:
        t = totals[path]
        record = {"device_kind": jax.devices()[0].device_kind, "strategy": strategy,
                  "size": size, "pipeline": path, "mode": "interleaved",
                  "batch_size": config.batch_size, "image_size": config.data.image_size,
                  "num_workers": config.data.num_workers,
                  "worker_kind": config.data.worker_kind, "cache_mb": config.data.cache_mb,
                  "devices": jax.device_count(), "timed_steps": t["steps"],
                  "rounds": max(1, args.repeats),
                  "trainer_steps_per_s": t["steps"] / t["elapsed"],
                  "step_only_steps_per_s": step_only,
                  "data_wait_fraction": t["wait"] / t["elapsed"],
                  "host_peak_rss_bytes":
                      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "workers_peak_rss_bytes":
                      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
                  "rss_scope": "one process holding both input paths",
                  "final_loss": float(np.asarray(metrics["loss"])),
                  "load_average_start": load_start, "load_average_end": os.getloadavg()[0]}
        record["trainer_vs_step_only"] = record["trainer_steps_per_s"] / step_only
        if path == "device":
            t = totals["device_step_only"]
            record["device_step_only_steps_per_s"] = t["steps"] / t["elapsed"]
        if path in ("decoded_cache", "device"):
            record.update(cache_bytes=cache.nbytes(),
                          cache_bytes_per_example=cache.nbytes() / len(cache),
                          cache_build_seconds=cache.manifest.get("build_seconds"),
                          cache_directory=cache.directory)
        records.append(record)
    return records


def _child(strategy: str, size: str, pipeline: str, args) -> dict:
    """:func:`measure` in a fresh process (its own peak RSS, no warm caches)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    command = [sys.executable, os.path.abspath(__file__), "--child",
               f"{strategy}:{size}:{pipeline}", "--child_out", out, "--data_dir",
               args.data_dir, "--cache_dir", args.cache_dir, "--steps", str(args.steps),
               "--cache_mb", str(args.cache_mb), "--worker_kind", args.worker_kind,
               "--num_workers", str(args.num_workers)]
    try:
        subprocess.run(command, check=True)
        with open(out) as f:
            return json.load(f)
    finally:
        os.remove(out)


def full_size_estimates(sizes: dict[str, int]) -> dict:
    """Bytes per example and totals of the cache at full size (``FULL_SIZE_FRAMES``)."""
    from handvae.data import decoded_cache

    out = {}
    for name, image_size in sizes.items():
        per = decoded_cache.bytes_per_example(image_size)
        out[name] = {"image_size": image_size, "bytes_per_example": per,
                     **{f"{d}_total_bytes": per * n for d, n in FULL_SIZE_FRAMES.items()}}
    return out


def _print(record: dict, prefix: str) -> None:
    print(f"{prefix}{record['strategy']:<11} {record['pipeline']:<14} trainer "
          f"{record['trainer_steps_per_s']:6.2f} steps/s, step alone "
          f"{record['step_only_steps_per_s']:6.2f} ({100 * record['trainer_vs_step_only']:.0f} "
          f"%), data wait {100 * record['data_wait_fraction']:.1f} %, peak RSS "
          f"{record['host_peak_rss_bytes'] / 2**20:,.0f} MiB, load "
          f"{record['load_average_start']:.1f}→{record['load_average_end']:.1f}", flush=True)


_MEDIAN_FIELDS = ("trainer_steps_per_s", "step_only_steps_per_s", "data_wait_fraction",
                  "trainer_vs_step_only", "host_peak_rss_bytes", "workers_peak_rss_bytes",
                  "first_step_seconds", "load_average_start", "load_average_end")


def _median_record(group: list[dict]) -> dict:
    """One record of a (strategy, path): the first run's fields, each timing the median over
    the runs, and the runs' own figures under ``runs``."""
    import numpy as np

    record = dict(group[0])
    if len(group) > 1:
        for field in _MEDIAN_FIELDS:
            record[field] = float(np.median([r[field] for r in group]))
        record["runs"] = [{k: r[k] for k in _MEDIAN_FIELDS} for r in group]
    return record


def _smoke_data_dir() -> str:
    from data_prep import build

    data_dir = tempfile.mkdtemp(prefix="handvae_trainer_rate_")
    build.build("rhd", "synthetic", os.path.join(REPO, "data_prep", "rhd", "dummy_data"),
                data_dir)
    return data_dir


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="", help="TFDS data_dir holding rhd/synthetic")
    parser.add_argument("--cache_dir", default="",
                        help="decoded cache location (default: beside the TFDS build)")
    parser.add_argument("--size", default="cpu", help="reproduce.py scale: tiny, cpu, paper")
    parser.add_argument("--strategies", default="R2P,RC2CHP_poe")
    parser.add_argument("--pipelines", default=",".join(PIPELINES))
    parser.add_argument("--steps", type=int, default=40, help="timed steps per record")
    parser.add_argument("--repeats", type=int, default=1,
                        help="children per record (alternating order); medians are kept")
    parser.add_argument("--cache_mb", type=int, default=-1,
                        help="host path's per-process budget (-1: the config's)")
    parser.add_argument("--worker_kind", default="", help="threads | processes (default: "
                                                          "the scale's)")
    parser.add_argument("--num_workers", type=int, default=0, help="0: the config's")
    parser.add_argument("--interleave", action="store_true",
                        help="one process per strategy, paths in alternating rounds")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds: tiny scale, R2P, 2 steps, in-process, no figures file")
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child_out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        strategy, size, pipeline = args.child.split(":")
        record = measure(strategy, size, pipeline, args)
        with open(args.child_out, "w") as f:
            json.dump(record, f)
        return record

    made: list[str] = []      # temporary folders of --smoke, removed at the end
    if args.smoke:
        args.size, args.strategies, args.steps = "tiny", "R2P", 2
        if not args.data_dir:
            args.data_dir = _smoke_data_dir()
            made.append(args.data_dir)
        if not args.cache_dir:
            args.cache_dir = tempfile.mkdtemp(prefix="handvae_trainer_rate_cache_")
            made.append(args.cache_dir)
    try:
        return _run(args, parser)
    finally:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)


def _run(args, parser) -> dict:
    if not args.data_dir:
        parser.error("--data_dir is required (see the module docstring for building data)")
    pipelines = args.pipelines.split(",")
    for pipeline in pipelines:
        if pipeline not in PIPELINES:
            parser.error(f"--pipelines: {pipeline!r} is not one of {PIPELINES}")
    runs: dict[tuple[str, str], list[dict]] = {}
    for strategy in (args.strategies.split(",") if args.interleave else ()):
        for record in interleaved(strategy, args.size, args):
            runs[(strategy, record["pipeline"])] = [record]
    for repeat in range(0 if args.interleave else 1 if args.smoke else max(1, args.repeats)):
        for strategy in args.strategies.split(","):
            for pipeline in (pipelines if repeat % 2 == 0 else pipelines[::-1]):
                run = measure if args.smoke else _child
                record = run(strategy, args.size, pipeline, args)
                runs.setdefault((strategy, pipeline), []).append(record)
                _print(record, "" if args.smoke else f"[run {repeat + 1}] ")
    records = [_median_record(group) for group in runs.values()]
    for record in records:
        _print(record, "median: " if len(record.get("runs", ())) > 1 else "")
        if "cache_bytes_per_example" in record:
            print(f"  decoded cache: {record['cache_bytes_per_example']:,.0f} bytes per "
                  f"example, {record['cache_bytes'] / 2**20:,.1f} MiB, built in "
                  f"{record['cache_build_seconds']:.1f} s ({record['cache_directory']})",
                  flush=True)
    by_key = {(r["strategy"], r["pipeline"]): r for r in records}
    ratios, device_ratios = (
        {s: by_key[(s, path)]["trainer_steps_per_s"] / by_key[(s, "host")]["trainer_steps_per_s"]
         for s in args.strategies.split(",") if (s, "host") in by_key and (s, path) in by_key}
        for path in ("decoded_cache", "device"))
    note = " (smoke: a few steps, not a figure)" if args.smoke else ""
    for strategy, ratio in ratios.items():
        print(f"{strategy}: decoded cache / host trainer rate = {ratio:.2f}x{note}")
    for strategy, ratio in device_ratios.items():
        print(f"{strategy}: device augmentation / host trainer rate = {ratio:.2f}x{note}")
    estimates = full_size_estimates({"cpu": 64, "paper": 256})
    for name, e in estimates.items():
        print(f"decoded cache at full size, {name} scale (S={e['image_size']}): "
              f"{e['bytes_per_example']:,} bytes per example, RHD "
              f"{e['RHD_total_bytes'] / 1e9:.2f} GB, STB {e['STB_total_bytes'] / 1e9:.2f} GB")
    results = {"records": records, "decoded_vs_host_trainer_rate": ratios,
               "device_vs_host_trainer_rate": device_ratios,
               "load_average_1_5_15": os.getloadavg(),
               "full_size_cache": estimates, "command": " ".join(sys.argv),
               "cpu_count": os.cpu_count()}
    if not args.smoke or args.out:
        _bench.write_figures(results, args.out, "trainer_rate.json")
    return results


if __name__ == "__main__":
    main()
