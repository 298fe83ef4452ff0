"""Generates and builds synthetic RHD and STB sets of the real data sets' sizes (issue 12).

    .venv/bin/python benchmarks/build_full_size.py                 # full size (RHD 41,258 +
                                                                    # 2,728; STB 15,000 + 3,000)
    .venv/bin/python benchmarks/build_full_size.py --fraction 0.05  # a reduced run
    .venv/bin/python benchmarks/build_full_size.py --smoke --out /tmp/out  # 2 + 2 frames each

For each format: writes the raw set with the synthetic generator
(``data_prep.synthetic``), builds it with ``data_prep.build`` (TensorFlow-free, all cores),
reads every stored example back, and reports generation and build time, examples/s, the peak
memory (resident set of the build process and its workers together, sampled every 0.2 s; and
of the build process alone), the size on disk of the raw and the built set, bytes per example,
and whether TensorFlow was imported. With ``--fraction`` < 1 the times and sizes are ALSO
extrapolated linearly to the full size and labelled ``extrapolated_full_size``: they are
estimates, not measurements. Results go to ``results/benchmarks/build_full_size.json``.
Full size needs about 20 GB of scratch disk (raw synthetic RHD ~9 GB + STB ~10.5 GB, built
~2.4 + 1.1 GB; extrapolated from a 4.5 % run); ``--tmp`` picks the folder. ``--smoke`` (the
smallest fraction: 2 training and 2 evaluation frames per format, one worker) checks in
seconds that the script runs; ``make test`` runs it.

Build figures (moved from WORKSPACE.md)

Build figures (`benchmarks/build_full_size.py --fraction 0.045`, 2 shared cores, load average
13–25 from other work, 2026-11-25; full size NOT run): RHD layout 1,857 + 123 frames: generation
474 s, build 348 s (5.7 examples/s under that load), peak RSS 309 MiB for the build process and
its 2 workers (123 MiB the main process), 56.6 KB/example, TensorFlow never imported. STB
layout 675 + 135: generation 504 s, build 134 s, peak 324 MiB, 61.4 KB/example. CPU cost
(`/usr/bin/time`, `--workers 1`, 60 frames): ~15 ms CPU per frame, so an idle 2-core machine
would build the full RHD in about 6 min (an estimate from CPU time, not a measurement).
**Full size, measured** (`python benchmarks/build_full_size.py --tmp /work/data/full`,
2026-11-25/26, the shared 2-core machine, load 3–7 throughout from a training run and other
work beside it; `benchmarks/figures/cpu_2026-11-26/build_full_size.json`):

- RHD: frames generated: 41,258 + 2,728; stored train / val / test: 39,195 / 2,063 / 2,728;
  generate: 47.6 min; build: 18.5 min; build ex/s: 39.5; peak RSS (build + workers / main): 620
  / 436 MiB; raw: 9.0 GiB; built: 2.31 GiB; bytes/example: 56,375.
- STB: frames generated: 15,000 + 3,000; stored train / val / test: 13,500 / 1,500 / 3,000;
  generate: 31.3 min; build: 9.3 min; build ex/s: 32.4; peak RSS (build + workers / main): 456 /
  270 MiB; raw: 10.4 GiB; built: 1.03 GiB; bytes/example: 61,655.

Every stored example was read back (43,986 and 18,000: 21 s and 6 s); TensorFlow was never
imported. The builds' 18.5 and 9.3 min are ~2× the idle estimate above because a training
run shared the two cores. The slow test `tests/data_prep/test_build_large.py` (1.1 GB of
noise-image examples, every one read back, `"tensorflow" not in sys.modules`) passed in
4 min 15 s at load ~6.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import sys
import tempfile
import threading
import time

import psutil

_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_ROOT))

import _bench  # noqa: E402  (benchmarks/, the script's folder)
from data_prep import build  # noqa: E402
from data_prep.synthetic import rhd_writer, stb_writer  # noqa: E402

FULL_SIZE = {"rhd": (41_258, 2_728), "stb": (15_000, 3_000)}


class PeakMemory:
    """Samples the resident memory of this process and its children (bytes) in a thread."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.peak_tree, self.peak_self = interval, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            try:
                own = me.memory_info().rss
                children = sum(c.memory_info().rss for c in me.children(recursive=True))
            except psutil.Error:
                continue
            self.peak_self = max(self.peak_self, own)
            self.peak_tree = max(self.peak_tree, own + children)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def disk_bytes(path: str | os.PathLike) -> int:
    """Bytes of all files under ``path``."""
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path)
               for f in files)


def run_format(name: str, num_train: int, num_eval: int, folder: str, workers: int | None,
               progress: bool) -> dict:
    raw, data_dir = os.path.join(folder, f"raw_{name}"), os.path.join(folder, "tfds")
    writer = rhd_writer.write_rhd if name == "rhd" else stb_writer.write_stb
    start = time.perf_counter()
    writer(raw, num_train, num_eval, seed=0, workers=workers, progress=progress)
    generate_s = time.perf_counter() - start
    with PeakMemory() as memory:
        start = time.perf_counter()
        built = build.build(name, "synthetic", raw, data_dir, workers=workers,
                            progress=progress)
        build_s = time.perf_counter() - start
    splits = {s: info.num_examples for s, info in built.info.splits.items()}
    start = time.perf_counter()
    read = 0
    for split in splits:
        source = built.as_data_source(split=split)
        for i in range(len(source)):
            read += bool(source[i]["frame"])
    read_s = time.perf_counter() - start
    stored = sum(splits.values())
    built_bytes = disk_bytes(built.data_dir)
    return {
        "frames": {"train": num_train, "eval": num_eval}, "stored": splits,
        "examples_read_back": read, "generate_s": round(generate_s, 1),
        "build_s": round(build_s, 1), "build_examples_per_s": round(stored / build_s, 1),
        "read_back_s": round(read_s, 1),
        "peak_rss_build_tree_mib": round(memory.peak_tree / 2**20),
        "peak_rss_build_process_mib": round(memory.peak_self / 2**20),
        "raw_disk_mib": round(disk_bytes(raw) / 2**20, 1),
        "built_disk_mib": round(built_bytes / 2**20, 1),
        "bytes_per_example": round(built_bytes / stored),
    }


# --smoke: the script's code paths in seconds (tests/benchmarks/test_benchmarks_smoke.py);
# every count is floored at 2 frames.
SMOKE = {"fraction": 1e-6, "workers": 1, "no_progress": True}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=1.0,
                        help="share of the full sizes to run (1 = full size)")
    parser.add_argument("--formats", default="rhd,stb")
    parser.add_argument("--workers", type=int, default=None, help="default: all cores")
    parser.add_argument("--tmp", default=None, help="scratch folder (default: system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the generated folders")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--out", default=str(_ROOT / "results" / "benchmarks"),
                        help="folder of build_full_size.json")
    args = _bench.parse_args(parser, argv, SMOKE)
    if not 0 < args.fraction <= 1:
        parser.error(f"--fraction must be in (0, 1], got {args.fraction}")
    report = {"fraction": args.fraction, "smoke": args.smoke, "cpus": os.cpu_count(),
              "load_average_start": os.getloadavg(), "machine": platform.platform(),
              "formats": {}}
    folder = tempfile.mkdtemp(prefix="build_full_size_", dir=args.tmp)
    try:
        for name in args.formats.split(","):
            train, test = (max(2, round(n * args.fraction)) for n in FULL_SIZE[name])
            result = run_format(name, train, test, folder, args.workers, not args.no_progress)
            if args.fraction < 1:
                factor = sum(FULL_SIZE[name]) / (train + test)
                result["extrapolated_full_size"] = {
                    "NOTE": f"linear extrapolation ×{factor:.1f} of this reduced run; "
                            "an estimate, not a measurement",
                    "generate_s": round(result["generate_s"] * factor),
                    "build_s": round(result["build_s"] * factor),
                    "built_disk_mib": round(result["built_disk_mib"] * factor),
                    "raw_disk_mib": round(result["raw_disk_mib"] * factor)}
            report["formats"][name] = result
            print(name, json.dumps(result, indent=2), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    report["load_average_end"] = os.getloadavg()
    report["tensorflow_imported"] = "tensorflow" in sys.modules
    print(f"tensorflow imported: {report['tensorflow_imported']}")
    _bench.write_figures(report, os.path.join(args.out, "build_full_size.json"),
                         "build_full_size.json")
    return report


if __name__ == "__main__":
    main()
