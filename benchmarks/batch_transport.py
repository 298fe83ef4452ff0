"""How fast worker processes can hand batches to the trainer: the spool against a pipe.

    python benchmarks/batch_transport.py [--batches 40] [--workers N]
    python benchmarks/batch_transport.py --smoke --out /tmp/batch_transport.json   # seconds

``data.worker_kind = "processes"`` (``handvae.data.prefetch``) builds batches in spawned
processes. This measures only the hand-over, on batches of the paper-size contract (batch 32,
256² crops, 64² heat maps, 256 points: ~37 MB of float32) that each worker makes once and then
returns again and again:

* ``pipe`` (the reference): the batch returned through ``ProcessPoolExecutor``, i.e. pickled
  through its pipe;
* ``spool``: :class:`handvae.data.prefetch.Prefetcher`, which writes each batch to a file in a
  memory-backed spool and hands over its name.

Printed and saved to ``results/benchmarks/batch_transport.json``: batches/s and GB/s of each,
and the spool's rate as a multiple of the pipe's. Report ``uptime`` with the figures.
``--smoke`` (one worker, 2 batches) checks in seconds that the script runs; ``make test``
runs it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import pathlib
import platform
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import _bench  # noqa: E402  (benchmarks/, the script's folder)
from experiments.configs import reproduce  # noqa: E402
from handvae.data import prefetch, spec  # noqa: E402

_BATCH = None


def paper_batch(step: int, pool=None) -> dict:
    """A paper-size batch of the contract, made once per process (transport, not building)."""
    global _BATCH
    if _BATCH is None:
        _BATCH = spec.dummy_batch(32, 256, 256, 64, seed=0)
    return _BATCH


def _rate(batches, count: int, nbytes: int) -> dict:
    for _ in range(2):                         # workers started and warm
        next(batches)
    start = time.perf_counter()
    for _ in range(count):
        next(batches)
    seconds = time.perf_counter() - start
    return {"batches_per_s": count / seconds, "gb_per_s": count * nbytes / seconds / 1e9}


# --smoke: the script's code paths in seconds (tests/benchmarks/test_benchmarks_smoke.py).
SMOKE = {"batches": 2, "workers": 1}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--workers", type=int,
                        default=reproduce.get_config("scale=paper").data.num_workers,
                        help="worker processes (default: the paper scale's, all cores but two)")
    parser.add_argument("--out", default="results/benchmarks/batch_transport.json")
    args = _bench.parse_args(parser, argv, SMOKE)
    nbytes = sum(v.nbytes for v in paper_batch(0).values())
    results = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
               "load_average": os.getloadavg(), "workers": args.workers,
               "batch_mb": nbytes / 1e6, "spool_root": prefetch.spool_root(),
               "smoke": args.smoke}
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(args.workers, mp_context=context) as pool:
        piped = pool.map(paper_batch, range(args.batches + 2))
        results["pipe"] = _rate(iter(piped), args.batches, nbytes)
    with prefetch.Prefetcher(paper_batch, 0, args.workers, worker_kind="processes") as spooled:
        results["spool"] = _rate(spooled, args.batches, nbytes)
    results["spool_vs_pipe"] = (results["spool"]["batches_per_s"]
                                / results["pipe"]["batches_per_s"])
    for name in ("pipe", "spool"):
        print(f"{name:5s}: {results[name]['batches_per_s']:6.1f} batches/s "
              f"({results[name]['gb_per_s']:.2f} GB/s of {nbytes / 1e6:.1f} MB batches)")
    print(f"spool / pipe: {results['spool_vs_pipe']:.2f}x  ({args.workers} workers, spool in "
          f"{results['spool_root']}, load {results['load_average'][0]:.1f})")
    _bench.write_figures(results, args.out, "batch_transport.json")
    return results


if __name__ == "__main__":
    main()
