"""Loss benchmark: auction EMD vs scipy's exact assignment, Chamfer forward/backward, compiles.

Run:  .venv/bin/python benchmarks/losses.py [--repeats 5] [--large-repeats 3]
      [--sizes 32x256 8x1024 8x2048] [--variant pooled|dense|pallas] [--epsilon E]
      [--out results/benchmarks/losses.json] [--lower_for cuda] [--smoke]
GPU (the Pallas kernel is the default there; figures: benchmarks/figures/h200_2026-11-26):
      python3 benchmarks/losses.py --sizes 32x256 8x1024

For each size B×N (default 32×256 uniform and hand-like, 8×1024 and 8×2048 hand-like) it
times the jitted ``earth_movers_distance`` with its default arguments (after compilation)
against ``scipy.optimize.linear_sum_assignment`` looped over the batch, both including
building the Euclidean costs, in the same run (and POT's exact network simplex ``ot.emd2``
the same way where POT is installed: ``pip install pot``, a benchmark-only anchor; JSON
``pot_s`` and ``speed_ratio_pot_over_auction``, null without it); reports the scipy/auction
speed ratio, the mean and max relative optimality gap of the auction's matching (exact costs
in float64), the bidding rounds, whether every element converged, and the 1-minute load
average when the row was measured. The 32×256 hand-like clouds are also solved in metres,
decimetres and millimetres (gap only): the default ε is relative, so the gap must not depend
on the unit.
Chamfer forward and forward+backward times and compile times close the table. Times are
medians over ``--repeats`` runs (``--large-repeats`` for N ≥ 1024), in seconds; the figures
are printed and written as JSON. ``--variant`` forces an auction variant ("pallas" runs in
Pallas' interpreter on CPU: correct but slow, only meaningful on a GPU). ``--lower_for cuda``
also lowers the same jitted EMD for a GPU on this machine, as that backend would trace it (its
default variant: the Pallas kernel for Triton), without running it: the GPU branch checked
on a CPU. ``--smoke`` (4×16 clouds, one repeat, ``--lower_for cuda``) checks in seconds that
the script runs; ``make test`` runs it.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

try:  # POT (`pip install pot`): a benchmark-only anchor, not a handvae dependency
    import ot
except ImportError:
    ot = None

# The checkout this script is in, not whichever handvae the environment installed (run from a
# worktree, `python benchmarks/losses.py` otherwise timed the main checkout's code).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import _bench  # noqa: E402  (benchmarks/, the script's folder)
from handvae import losses  # noqa: E402
from handvae.losses import _auction  # noqa: E402

# Hand-like clouds in bone-length units span ~7 bones, a hand ~0.1 m: unit factors from bones.
UNITS = {"bone": 1.0, "m": 0.014, "dm": 0.14, "mm": 14.0}


def uniform_clouds(rng: np.random.Generator, batch: int, points: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Two independent [B, N, 3] clouds, uniform in the unit cube."""
    return (rng.uniform(size=(batch, points, 3)).astype(np.float32),
            rng.uniform(size=(batch, points, 3)).astype(np.float32))


def _hand_surface(rng: np.random.Generator, bend: np.ndarray, points: int) -> np.ndarray:
    """[N, 3] points on a hand-like surface in bone-length units (palm slab + 5 capsules)."""
    # Finger bases on the palm's distal edge, directions roughly along +y, lengths ~3 bones.
    bases = np.array([[-1.6, 0.2, 0], [-0.6, 1.0, 0], [0.2, 1.1, 0], [1.0, 1.0, 0],
                      [1.7, 0.7, 0]])
    lengths = np.array([2.4, 3.0, 3.3, 3.1, 2.5])
    angles = np.array([-0.9, -0.15, 0.0, 0.12, 0.3])
    parts = []
    palm = rng.integers(points // 3, points // 2)
    uv = rng.uniform([-1.5, -1.8], [1.8, 1.0], size=(palm, 2))
    parts.append(np.c_[uv, rng.choice([-0.35, 0.35], palm) + rng.normal(0, 0.03, palm)])
    per_finger = np.diff(np.linspace(0, points - palm, 6).astype(int))
    for base, length, angle, curl, count in zip(bases, lengths, angles, bend, per_finger):
        t = rng.uniform(0, 1, count)
        axis = np.stack([np.full(count, np.sin(angle)), np.cos(angle) * np.cos(curl * t),
                         -np.sin(curl * t)], axis=1)                 # curls towards −z
        centre = base + (length * t)[:, None] * axis
        normal = rng.normal(size=(count, 3))
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        parts.append(centre + 0.3 * normal)
    return np.concatenate(parts)[:points]


def hand_clouds(rng: np.random.Generator, batch: int, points: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Target hand clouds and 'reconstructions': other surface samples, slightly other pose."""
    target, recon = [], []
    for _ in range(batch):
        bend = rng.uniform(0, 1.5, 5)
        target.append(_hand_surface(rng, bend, points))
        recon.append(_hand_surface(rng, bend + rng.normal(0, 0.15, 5), points)
                     + rng.normal(0, 0.05, (points, 3)))
    return np.asarray(recon, np.float32), np.asarray(target, np.float32)


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _scipy_emd(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Exact total matching cost per example (builds the costs, then assigns)."""
    totals = []
    for a, b in zip(p, q):
        cost = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
        rows, cols = linear_sum_assignment(cost)
        totals.append(cost[rows, cols].sum())
    return np.asarray(totals)


def _pot_emd(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Exact total matching cost per example by POT's network simplex (builds the costs)."""
    totals = []
    for a, b in zip(p, q):
        cost = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1).astype(np.float64)
        weights = np.full(len(a), 1.0 / len(a))
        totals.append(ot.emd2(weights, weights, cost, numItermax=50_000_000) * len(a))
    return np.asarray(totals)


def _gap(p: np.ndarray, q: np.ndarray, options: dict) -> dict:
    """Relative optimality gap of the auction's matching (float64 costs), rounds, convergence."""
    cost = np.linalg.norm(p[:, :, None].astype(np.float64) - q[:, None], axis=-1)
    optimum = np.array([c[linear_sum_assignment(c)].sum() for c in cost])
    out = losses.auction_assignment(jnp.asarray(cost, jnp.float32), **options)
    assignment = np.asarray(out.assignment)
    realised = np.take_along_axis(cost, assignment[..., None], -1)[..., 0].sum(-1)
    gap = (realised - optimum) / optimum
    return {"mean_relative_gap": float(gap.mean()), "max_relative_gap": float(gap.max()),
            "all_converged": bool(np.all(out.converged)), "rounds": int(out.iterations),
            "mean_emd": float(optimum.mean() / p.shape[1])}


def _jitted_emd(options: dict):
    """The jitted ``earth_movers_distance`` (builds the costs, runs the auction, averages the
    matched distances): [B, N, 3], [B, N, 3] -> [B]."""
    return jax.jit(lambda p, q: losses.earth_movers_distance(p, q, **options))


def bench_auction(name: str, p: np.ndarray, q: np.ndarray, repeats: int, options: dict) -> dict:
    """Times the jitted ``earth_movers_distance`` and scipy's exact assignment (builds the
    costs, assigns)."""
    emd = _jitted_emd(options)
    p_dev, q_dev = jnp.asarray(p), jnp.asarray(q)
    start = time.perf_counter()
    jax.block_until_ready(emd(p_dev, q_dev))
    first_call = time.perf_counter() - start
    auction_s = _median_time(lambda: emd(p_dev, q_dev), repeats)
    scipy_s = _median_time(lambda: _scipy_emd(p, q), repeats)
    pot_s = _median_time(lambda: _pot_emd(p, q), repeats) if ot else None
    load = os.getloadavg()[0]
    return {"clouds": name, "batch": p.shape[0], "points": p.shape[1],
            "variant": options.get("variant") or _auction.default_variant(),
            "epsilon": options.get("epsilon", losses.emd.EPSILON), "repeats": repeats,
            "auction_s": auction_s, "scipy_s": scipy_s,
            "speed_ratio_scipy_over_auction": scipy_s / auction_s,
            "pot_s": pot_s, "speed_ratio_pot_over_auction": pot_s / auction_s if ot else None,
            "auction_compile_and_first_call_s": first_call, "load_average_1min": load,
            **_gap(p, q, options)}


def lower_auction(batch: int, points: int, options: dict, platform: str) -> dict:
    """Lowers the jitted EMD of :func:`bench_auction` for ``platform`` ([B, N, 3] clouds) as its
    backend would trace it, without running it: seconds, the variant, whether a Pallas kernel
    were lowered for Triton."""
    clouds = jax.ShapeDtypeStruct((batch, points, 3), jnp.float32)
    lowered, seconds = _bench.lower_for(_jitted_emd(options), (clouds, clouds), platform)
    with _bench.default_backend(platform):
        variant = options.get("variant") or _auction.default_variant()
    return {"platform": platform, "batch": batch, "points": points, "variant": variant,
            "lower_s": seconds, "triton_kernels": _bench.triton_kernels(lowered)}


def bench_chamfer(p: np.ndarray, q: np.ndarray, repeats: int) -> dict:
    forward = jax.jit(lambda p, q: losses.chamfer_distance(p, q))
    backward = jax.jit(jax.value_and_grad(lambda p, q: losses.chamfer_distance(p, q).mean()))
    p_dev, q_dev = jnp.asarray(p), jnp.asarray(q)
    start = time.perf_counter()
    jax.block_until_ready(forward(p_dev, q_dev))
    compile_forward = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(backward(p_dev, q_dev))
    compile_backward = time.perf_counter() - start
    return {
        "chamfer_forward_s": _median_time(lambda: forward(p_dev, q_dev), repeats),
        "chamfer_forward_backward_s": _median_time(lambda: backward(p_dev, q_dev), repeats),
        "chamfer_forward_compile_and_first_call_s": compile_forward,
        "chamfer_backward_compile_and_first_call_s": compile_backward,
    }


def _size(text: str) -> tuple[int, int]:
    batch, points = text.lower().split("x")
    return int(batch), int(points)


# --smoke: the script's code paths in seconds (tests/benchmarks/test_benchmarks_smoke.py).
SMOKE = {"sizes": [(4, 16)], "repeats": 1, "large_repeats": 1, "lower_for": "cuda"}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--large-repeats", type=int, default=3,
                        help="repeats for N >= 1024 (scipy takes seconds per element there)")
    parser.add_argument("--sizes", nargs="+", type=_size, default=[(32, 256), (8, 1024),
                                                                   (8, 2048)],
                        help="B x N sizes, e.g. 32x256 8x2048")
    parser.add_argument("--epsilon", type=float, default=None,
                        help="relative auction ε (default: the library's)")
    parser.add_argument("--out", default="results/benchmarks/losses.json")
    parser.add_argument("--variant", choices=losses.emd.VARIANTS, default=None,
                        help="auction variant (default: pooled on CPU, pallas on a GPU, "
                             "dense otherwise)")
    parser.add_argument("--rounds-per-iteration", type=int, default=8,
                        help="auction rounds per loop iteration (dense variant)")
    parser.add_argument("--lower_for", choices=_bench.PLATFORMS, default=None,
                        help="also lower the jitted EMD at each size for this platform, as its "
                             "backend would trace it, without running it (a GPU branch on CPU)")
    args = _bench.parse_args(parser, argv, SMOKE)
    options = {"variant": args.variant}
    if args.variant == "dense":
        options["rounds_per_iteration"] = args.rounds_per_iteration
    if args.epsilon is not None:
        options["epsilon"] = args.epsilon

    print(f"device {jax.devices()[0].device_kind}; {os.cpu_count()} CPUs; "
          f"load average at start {os.getloadavg()[0]:.1f}", flush=True)
    header = (f"{'clouds':8} {'B':>3} {'N':>5} {'auction s':>10} {'scipy s':>8} {'POT s':>8} "
              f"{'scipy/auc':>9} {'mean gap':>9} {'max gap':>9} {'rounds':>6} {'conv':>5} "
              f"{'load':>5}")
    print(header, flush=True)
    rows = []
    for batch, points in args.sizes:
        rng = np.random.default_rng(0)
        kinds = ["uniform", "hand"] if points <= 256 else ["hand"]
        for name in kinds:
            make = uniform_clouds if name == "uniform" else hand_clouds
            p, q = make(rng, batch, points)
            repeats = args.repeats if points < 1024 else args.large_repeats
            r = bench_auction(name, p, q, repeats, options)
            rows.append(r)
            pot = f"{r['pot_s']:8.4f}" if ot else f"{'-':>8}"
            print(f"{name:8} {batch:3d} {points:5d} {r['auction_s']:10.4f} {r['scipy_s']:8.4f} "
                  f"{pot} "
                  f"{r['speed_ratio_scipy_over_auction']:9.2f} {r['mean_relative_gap']:9.2e} "
                  f"{r['max_relative_gap']:9.2e} {r['rounds']:6d} "
                  f"{str(r['all_converged']):>5} {r['load_average_1min']:5.1f}", flush=True)
    # Unit-free accuracy: the same hand-like clouds in metres, decimetres and millimetres.
    batch, points = args.sizes[0]
    p, q = hand_clouds(np.random.default_rng(0), batch, points)
    units = {}
    for unit in ("m", "dm", "mm"):
        factor = np.float32(UNITS[unit])
        units[unit] = _gap(p * factor, q * factor, options)
        print(f"hand {batch}x{points} in {unit:2}: mean gap {units[unit]['mean_relative_gap']:.2e},"
              f" max {units[unit]['max_relative_gap']:.2e}, rounds {units[unit]['rounds']}, "
              f"converged {units[unit]['all_converged']}", flush=True)
    chamfer = bench_chamfer(p, q, args.repeats)
    print(f"chamfer {batch}x{points} forward {chamfer['chamfer_forward_s'] * 1e3:.2f} ms, "
          f"forward+backward {chamfer['chamfer_forward_backward_s'] * 1e3:.2f} ms; compile "
          f"(incl. first call) {chamfer['chamfer_forward_compile_and_first_call_s']:.2f} s / "
          f"{chamfer['chamfer_backward_compile_and_first_call_s']:.2f} s")
    lowered = []
    for batch, points in args.sizes if args.lower_for else []:
        lowered.append(lower_auction(batch, points, options, args.lower_for))
        r = lowered[-1]
        print(f"lowered for {r['platform']}: {batch}x{points}, variant {r['variant']}, "
              f"{r['lower_s']:.2f} s, {r['triton_kernels']} Triton kernel(s)", flush=True)

    result = {
        "auction": rows, "units": units, "chamfer": chamfer, "lowered": lowered,
        "smoke": args.smoke, "repeats": args.repeats,
        "large_repeats": args.large_repeats, "jax": jax.__version__,
        "device": jax.devices()[0].device_kind, "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(), "load_average_1min": os.getloadavg()[0],
        "machine": platform.machine(),
    }
    _bench.write_figures(result, args.out, "losses.json")
    return result


if __name__ == "__main__":
    main()
