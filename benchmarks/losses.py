"""Loss benchmark: auction EMD vs scipy's exact assignment, Chamfer forward/backward, compiles.

Run:  .venv/bin/python benchmarks/losses.py [--repeats 5] [--out results/benchmarks/losses.json]
      [--variant pooled|dense] [--rounds-per-iteration 8]

On B=32 clouds of N=256 points (uniform in the unit cube, and hand-surface-like clusters in
bone-length units), it times the jitted ``earth_movers_distance`` (after compilation) against
``scipy.optimize.linear_sum_assignment`` looped over the batch (both including building the
[32, 256, 256] Euclidean costs), reports the mean relative optimality gap of the auction's
cost, Chamfer forward and forward+backward times, and compile times. It prints a table and
writes the figures as JSON. Times are medians over ``--repeats`` runs, in seconds. The auction
variant defaults by backend ("pooled" on CPU, "dense" with R rounds per loop iteration on
GPU/TPU); ``--variant`` forces one, and the table says which ran.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from handvae import losses
from handvae.losses import _auction

BATCH, POINTS = 32, 256


def uniform_clouds(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two independent [B, N, 3] clouds, uniform in the unit cube."""
    return (rng.uniform(size=(BATCH, POINTS, 3)).astype(np.float32),
            rng.uniform(size=(BATCH, POINTS, 3)).astype(np.float32))


def _hand_surface(rng: np.random.Generator, bend: np.ndarray) -> np.ndarray:
    """[N, 3] points on a hand-like surface in bone-length units (palm slab + 5 capsules)."""
    # Finger bases on the palm's distal edge, directions roughly along +y, lengths ~3 bones.
    bases = np.array([[-1.6, 0.2, 0], [-0.6, 1.0, 0], [0.2, 1.1, 0], [1.0, 1.0, 0],
                      [1.7, 0.7, 0]])
    lengths = np.array([2.4, 3.0, 3.3, 3.1, 2.5])
    angles = np.array([-0.9, -0.15, 0.0, 0.12, 0.3])
    points = []
    palm = rng.integers(POINTS // 3, POINTS // 2)
    uv = rng.uniform([-1.5, -1.8], [1.8, 1.0], size=(palm, 2))
    points.append(np.c_[uv, rng.choice([-0.35, 0.35], palm) + rng.normal(0, 0.03, palm)])
    per_finger = np.diff(np.linspace(0, POINTS - palm, 6).astype(int))
    for base, length, angle, curl, count in zip(bases, lengths, angles, bend, per_finger):
        t = rng.uniform(0, 1, count)
        axis = np.stack([np.full(count, np.sin(angle)), np.cos(angle) * np.cos(curl * t),
                         -np.sin(curl * t)], axis=1)                 # curls towards −z
        centre = base + (length * t)[:, None] * axis
        normal = rng.normal(size=(count, 3))
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        points.append(centre + 0.3 * normal)
    return np.concatenate(points)[:POINTS]


def hand_clouds(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Target hand clouds and 'reconstructions': other surface samples, slightly other pose."""
    target, recon = [], []
    for _ in range(BATCH):
        bend = rng.uniform(0, 1.5, 5)
        target.append(_hand_surface(rng, bend))
        recon.append(_hand_surface(rng, bend + rng.normal(0, 0.15, 5))
                     + rng.normal(0, 0.05, (POINTS, 3)))
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


def bench_auction(name: str, p: np.ndarray, q: np.ndarray, epsilon: float, repeats: int,
                  variant: str | None = None, rounds_per_iteration: int = 8) -> dict:
    """Times the jitted ``earth_movers_distance`` (builds the costs, runs the auction, averages
    the matched distances) and scipy's exact assignment (builds the costs, assigns)."""
    options = {"variant": variant, "rounds_per_iteration": rounds_per_iteration}
    emd = jax.jit(lambda p, q: losses.earth_movers_distance(p, q, epsilon=epsilon, **options))
    p_dev, q_dev = jnp.asarray(p), jnp.asarray(q)
    start = time.perf_counter()
    jax.block_until_ready(emd(p_dev, q_dev))
    first_call = time.perf_counter() - start
    auction_s = _median_time(lambda: emd(p_dev, q_dev), repeats)
    scipy_s = _median_time(lambda: _scipy_emd(p, q), repeats)
    # Optimality: the same costs in float64 for both, the auction's matching from the API.
    cost = np.linalg.norm(p[:, :, None].astype(np.float64) - q[:, None], axis=-1)
    optimum = np.array([c[linear_sum_assignment(c)].sum() for c in cost])
    out = losses.auction_assignment(jnp.asarray(cost, jnp.float32), epsilon=epsilon,
                                    **options)
    assignment = np.asarray(out.assignment)
    realised = np.take_along_axis(cost, assignment[..., None], -1)[..., 0].sum(-1)
    gap = (realised - optimum) / optimum
    emd_value = np.asarray(emd(p_dev, q_dev), np.float64)
    return {
        "clouds": name, "epsilon": epsilon, "batch": BATCH, "points": POINTS,
        "variant": variant or _auction.default_variant(),
        "rounds_per_iteration": rounds_per_iteration,
        "auction_s": auction_s, "scipy_s": scipy_s, "speed_ratio_scipy_over_auction":
        scipy_s / auction_s, "auction_compile_and_first_call_s": first_call,
        "mean_relative_gap": float(gap.mean()), "max_relative_gap": float(gap.max()),
        "emd_mean_relative_gap": float(np.mean(emd_value * POINTS / optimum - 1.0)),
        "all_converged": bool(np.all(out.converged)), "rounds": int(out.iterations),
        "mean_emd": float(optimum.mean() / POINTS),
    }


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1e-3, 1e-2])
    parser.add_argument("--out", default="results/benchmarks/losses.json")
    parser.add_argument("--variant", choices=losses.emd.VARIANTS, default=None,
                        help="auction variant (default: pooled on CPU, dense otherwise)")
    parser.add_argument("--rounds-per-iteration", type=int, default=8,
                        help="auction rounds per loop iteration (dense variant)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    clouds = {"uniform": uniform_clouds(rng), "hand": hand_clouds(rng)}
    auction_rows = [bench_auction(name, p, q, eps, args.repeats, args.variant,
                                  args.rounds_per_iteration)
                    for name, (p, q) in clouds.items() for eps in args.epsilons]
    chamfer = bench_chamfer(*clouds["hand"], args.repeats)

    print(f"B={BATCH}, N={POINTS}; device {jax.devices()[0].device_kind}; "
          f"load average {os.getloadavg()[0]:.1f}")
    variant = auction_rows[0]["variant"]
    print(f"auction variant {variant}" + (f", {args.rounds_per_iteration} rounds per loop "
                                          f"iteration" if variant == "dense" else ""))
    header = (f"{'clouds':8} {'eps':>7} {'auction s':>10} {'scipy s':>8} {'scipy/auc':>9} "
              f"{'mean gap':>9} {'max gap':>9} {'rounds':>6} {'compile s':>9}")
    print(header)
    for r in auction_rows:
        print(f"{r['clouds']:8} {r['epsilon']:7.0e} {r['auction_s']:10.4f} {r['scipy_s']:8.4f} "
              f"{r['speed_ratio_scipy_over_auction']:9.2f} {r['mean_relative_gap']:9.2e} "
              f"{r['max_relative_gap']:9.2e} {r['rounds']:6d} "
              f"{r['auction_compile_and_first_call_s']:9.2f}")
    print(f"chamfer forward {chamfer['chamfer_forward_s'] * 1e3:.2f} ms, forward+backward "
          f"{chamfer['chamfer_forward_backward_s'] * 1e3:.2f} ms; compile (incl. first call) "
          f"{chamfer['chamfer_forward_compile_and_first_call_s']:.2f} s / "
          f"{chamfer['chamfer_backward_compile_and_first_call_s']:.2f} s")

    result = {
        "auction": auction_rows, "chamfer": chamfer, "repeats": args.repeats,
        "jax": jax.__version__, "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(), "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0], "machine": platform.machine(),
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
