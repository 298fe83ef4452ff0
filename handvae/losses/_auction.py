"""Internals of the batched ε-scaling auction (see :mod:`handvae.losses.emd` for the API).

State per batch element: column prices, the owner of each column, the column held by each
row and the current ε. Two loops over the same state, chosen by backend (``solve``'s variant):

* "pooled" (CPU, :mod:`handvae.losses._pooled`): each loop iteration is one Jacobi bidding
  round of up to k unassigned rows of the *whole batch* (a stack of flat indices b·N + i),
  followed by the phase bookkeeping of the elements whose rows are all assigned, one element
  at a time.
* "dense" (GPU/TPU): there every loop iteration, and every conditional (``lax.switch``, the
  nested loop of ``next_phase``), costs a device→host sync of ~tens of µs, far more than a
  round's arithmetic. So all unassigned rows bid in every round (O(B·N²) elementwise work and
  reductions), all completed elements change phase at once, and one loop iteration runs R
  rounds unrolled; a round after the loop would have stopped is an exact no-op.

Design notes and measurements (moved from WORKSPACE.md)

The auction has two loops over one state, picked by backend (`variant=None`; force one with
`variant="pooled"|"dense"`; a third, `"pallas"`, in `_auction_pallas.py`). "pooled" (CPU,
`_pooled.py`) is the design in `handvae/losses/__init__.py`: cheap loop iterations, bidder
tiers, a per-element phase reset (its second version is described in `_pooled.py`). On XLA:GPU
every loop iteration
and every conditional costs a device→host sync (the pooled loop measured ~80–90 µs per round
on an H100, for tiny arithmetic), so "dense" lets all unassigned rows bid every round (O(B·N²),
no scatter: per-column max/min
reductions), resets all completed elements at once, and unrolls `rounds_per_iteration` (R=8)
rounds per loop iteration; rounds past the stop are exact no-ops, so `iterations` and the
`max_iterations` bound still count rounds and R never changes the result. Both keep the same
guarantees but reach different assignments; the tests run "dense" on CPU by forcing it
(there it is ~20× slower: 32×256 uniform, 1977 rounds, 5.3 s vs pooled 2213 rounds, 0.24 s).
`benchmarks/losses.py [--variant dense] [--rounds-per-iteration 16]` times either variant.
The pooled loop carries the unassigned rows per element, updated in O(k) per round and O(N)
per phase reset, so the completion test costs O(B), not an O(B·N) reduction per round.

ε is relative (issue 13): the final ε in cost units is `epsilon · s_b` per element, with
s_b = max(mean row minimum, mean column minimum, 1e-3 · cost range) (`_auction.cost_scale`;
the means are lower bounds on optimum/N, i.e. on the EMD), so a converged solve is within a
factor (1 + ε) of the optimum and the same call is equally accurate in metres, decimetres,
millimetres or bone lengths (tested against scipy in all three). `relative=False` on
`auction_assignment` keeps the old absolute ε (integer costs, ε < 1/N: exact). The first phase
starts at max(s_b, cost range / 16) (ε-scaling from the cost scale; `epsilon_scaling=1`: one
phase at the final ε). Defaults: ε = 5e-3 (hand-like 32×256: mean gap ~1e-5 in every unit,
ε = 1e-2 gave ~5e-5), θ = 5. `max_iterations=None` (default) is
`emd.default_max_iterations(B, N) = 10_000 + 64·N + 4·B·N` rounds (pooled rounds serve the
whole batch), ≥ 5× what 8×2048 hand-like clouds need, so N = 2048 converges with defaults.
`earth_movers_distance(..., return_converged=True)` returns `(distance [B], converged [B]
bool)`: False where the bound cut the solve off (valid matching, no ε guarantee) or the input
has NaN/inf; the default return stays a plain [B] array. Every variant starts from column
reduction (`_auction.warm_start`: prices = column minima, each column to its nearest row, one
per row; these pairs satisfy exact CS, so they survive all phase resets until outbid).
Measured effect: one 256-point hand element, dense rounds 2461 → 1777; pooled 32×256
unchanged within noise (~3000 rounds). Where the rounds go (one hand element, dense, default
ε): 51 % of rounds have one unassigned row, 94 % at most four: eviction chains in each
phase's tail, one bid per round. ε, θ and ε₀ tuning moved rounds by ±15 % only; the
augmenting-path finish below cuts the tails' rounds, but the time is elsewhere.
Measured 2026-11-25 on the shared 2-core machine at load 16–18 (`python benchmarks/losses.py`,
medians of 5 / 3 runs; under that load timings vary ~2–4× between runs, rounds do not):
32×256 uniform 0.27 s vs scipy 0.51 s (1.9×, gap 1.2e-5, 2241 rounds); 32×256 hand-like
0.25 s vs 0.51 s (2.0×, gap 1.6e-5, 3887 rounds); 8×1024 3.9 s vs 6.4 s (1.6×, 1.2e-5,
18 953 rounds, converged); 8×2048 10.8 s vs 44.4 s (4.1×, 1.8e-5, 25 391 rounds, converged);
hand-like 32×256 in m / dm / mm: gap 1.5e-5 / 8.6e-6 / 1.3e-5. Before (absolute ε = 1e-3,
10 000-round bound; load 2.4–5.7): 32×256 hand-like 0.24 s vs 0.11 s (0.44×, 3153 rounds);
the same clouds at 1 cm per bone gap 2.6e-2; 8×1024 and 8×2048 cut off at 10 000 rounds,
gaps 4.2e-3 / 9.7e-3, unreported. The 2× at load ~17 is load noise, not a win of the
algorithm: rounds did not drop (3887 vs 3153 on the same 32×256 clouds) and old and new code
timed interleaved at load 7–10 (`earth_movers_distance` defaults, 32×256 hand-like, 9 runs
each, 3 alternations) gave minima 0.195–0.20 s (new) vs 0.22–0.27 s (old), medians 0.25–0.81
vs 0.26–0.39 s. At load 3.2–3.5 (`--sizes 32x256 8x1024`): 32×256 uniform 0.17 s vs scipy
0.14 s (0.86×), hand-like 0.23 s vs 0.14 s (0.60×; old code at load 4.5: 0.25 s vs 0.09 s,
0.37×), 8×1024 0.99 s vs 1.34 s (1.36×, converged). The ≥ 2× target of issue 13 for 32×256 is
not met; from N ≈ 1024 the auction is ahead of scipy (and now converges).

**Shortest-augmenting-path finish: tried, measured, not kept** (issue 13 item 2; the code,
`_augment.py` with a `path_rows` option and its tests, is on branch `auction`, commit
50eea99). The paper is silent on the EMD solver (Eq. 9 only defines the distance); this is an
implementation choice. With `path_rows=R` > 0 (pooled only; `auction_assignment` /
`earth_movers_distance(path_rows=...)`, `benchmarks/losses.py --path-rows R`) an element with at
most R unassigned rows stops bidding and assigns them one at a time: Dijkstra from all its
unassigned rows (distance 0) over the reduced costs r_ij = π_i − (a_ij − p_j) ≥ 0 (current
prices, π_i the row's best profit), column → owner at cost 0, until a free column is settled at
distance D; settled columns' prices rise by D − d_j and the path is flipped. Proof in the
module docstring: ε-CS is kept for every pair (path rows become exactly tight, other settled
rows keep their slack, prices only rise), so the (1 + ε) guarantee and `converged` are
unchanged. One Dijkstra step per loop iteration, vectorised over the batch, in the same
iteration as the other elements' bidding round. Tested: alone (R = N from column reduction,
i.e. successive shortest paths) it is exact on integer costs; with R = 2 it matches scipy
within the guarantee in m, dm and mm with fewer rounds (tests/losses/test_losses_emd_relative.py).
Measured (rounds are load-free; 32×256 hand-like, benchmark seed): R = 0/1/2/4/8 →
2975/1902/1670/2134/3368 rounds (each search settles ~10² columns, so more rows are cheaper by
bidding); θ 3–20 and ε₀ = range/4 with R = 1–3: 1650–3208; 32×256 uniform 2241 → 1645; 8×1024
hand-like 18 953 → 10 188; 8×2048 25 391 → 25 610 (no cut: searches settle ~N columns there).
But the time did not follow: interleaved in one process (`_auction.solve`, load 6–7, 7–15
runs each, minima) 32×256 hand-like 0.196 → 0.179 s (−9 %), uniform 0.162 → 0.176 s (+9 %),
8×1024 hand-like 1.32 → 1.17 s (−11 %); a loop iteration with a search step costs ~1.7× one
without (~115 vs ~66 µs at load 7; the search step alone ~16 µs, plus the sequential path
flip, ~10² steps, and the start/finish conditionals), and at 8×2048 the same rounds cost more
(benchmark: 7.6 s vs 4.3 s, loads 6–7, different runs). Hence not merged; the ≥ 2× goal
is not met. Where the time goes instead (32×256 hand-like, pooled, R = 0): rounds by pooled
tier k ≤ 16: 945, 32: 469, 64: 619, 128: 532, 256: 389, 512: 110, 1024: 5; a round costs ~21 µs
at k = 16 but ~50 µs at 64 and ~137 µs at 256 (`top2` on a [256, 256] block is ~5× a plain
`max`, and 12× a [64, 256] block: cache-bound; chunking it with `lax.map` did not help,
`lax.top_k` is 2× slower), so ~80 % of the time is in the ~1650 rounds with ≥ 33 pooled
bidders: the *heads* of each phase, where each phase's reset unassigns 55–75 % of the rows
(137–192 of 256 for ε/5) and they all re-bid, not the one-row tails (that analysis was of
the first pooled loop; the second version (`_pooled.py`) found most of the time in thread
hand-offs).
Figures, 2026-11-26 01:04–01:09, back to back on the shared 2-core machine
(`python benchmarks/losses.py --sizes 32x256 8x1024 8x2048 --repeats 7`, main's code, then
that branch with `--path-rows 2`; auction s / scipy s, scipy/auction, mean gap, rounds, load):

- uniform 32×256: before (R = 0, = default): 0.168 / 0.147, 0.87×, 1.2e-5, 2241, 6.2; after,
  `--path-rows 2`: 0.183 / 0.140, 0.77×, 1.3e-5, 1645, 6.0.
- hand 32×256: before (R = 0, = default): 0.242 / 0.172, 0.71×, 1.6e-5, 3887, 6.2; after,
  `--path-rows 2`: 0.205 / 0.135, 0.66×, 1.1e-5, 1867, 5.9.
- hand 8×1024: before (R = 0, = default): 1.14 / 1.34, 1.18×, 1.2e-5, 18 953, 6.1; after,
  `--path-rows 2`: 1.11 / 1.28, 1.15×, 2.2e-5, 10 188, 5.9.
- hand 8×2048: before (R = 0, = default): 4.18 / 12.4, 2.96×, 1.8e-5, 25 391, 6.0; after,
  `--path-rows 2`: 5.18 / 10.9, 2.11×, 2.7e-5, 25 610, 5.8.

Hand-like 32×256 in m / dm / mm, mean gap: 1.5e-5 / 8.6e-6 / 1.3e-5 (before), 9.9e-6 /
1.3e-5 / 7.4e-6 (after); max gaps ≤ 1.3e-4 everywhere, all converged. The auction's own time
fell 15 % on hand-like 32×256, was flat at 8×1024 and rose 10 % / 24 % on uniform 32×256 /
8×2048; scipy's time moved 5–12 % between the two runs, so the ratios move less than that.
`benchmarks/losses.py` now puts its own checkout first on `sys.path` (like the other
benchmarks): run from a worktree it used to import the installed main checkout's `handvae`.

**Auction variants picked by backend** (CPU "pooled", GPU "pallas" since 2026-11-26,
other accelerators "dense"; the figures below predate the Pallas kernel). On CPU a round lets a
small, pooled set of
bidders bid (few wasted slots, per-element ε resets); on a GPU every unassigned row bids
every round, phase changes are vectorised and 8 rounds run per `while_loop` iteration, so
the host syncs once per 8 rounds. Measured on one H100 (jax 0.11.2,
`python3 benchmarks/losses.py --repeats 5 --epsilons 1e-3`, absolute ε then, B=32, N=256): dense
0.038 s (uniform) / 0.047 s (hand-like) against 0.18 / 0.26 s for the pooled variant on the
same card; scipy on that machine's CPU 0.17–0.22 s, i.e. the GPU auction is 4.3–4.7×
faster than the exact solver; relative gap 6e-5 / 1e-5. The S4 step at batch 32 on 256²
crops went from 3.2 to 10.9 steps/s on that card (`benchmarks/train_step.py`).
Again on one H200 (2026-11-26, jax 0.11.2, relative ε = 5e-3, `bash benchmarks/gpu.sh`;
`benchmarks/figures/h200_2026-11-26/`): dense 32×256 uniform 0.036 s / hand-like 0.077 s /
8×1024 hand-like 0.42 s against scipy 0.15 / 0.16 / 1.57 s on its host (4.2× / 2.1× /
3.8×, gaps ~1e-5); the paper-scale steps (`experiments/configs/reproduce.py`, scale=paper:
the paper's decoder widths, batch 32, 256²) R2P 138.5 steps/s, S4 12.25 steps/s (8.8 % of
R2P): the 77 ms solve is ~95 % of S4's 82 ms step. The Pallas kernel, as first written,
0.08× scipy (see `_auction_pallas.py`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class State(NamedTuple):
    prices: Array      # [B, N] column prices (benefit units)
    owner: Array       # [B, N] int32 row owning column j, N when free
    assignment: Array  # [B, N] int32 column held by row i, -1 when unassigned
    epsilon: Array     # [B] ε of the current phase
    done: Array        # [B] bool: final phase complete (or input invalid)
    iteration: Array   # int32 rounds run


def top2(values: Array) -> tuple[Array, Array, Array]:
    """Best value, its (lowest) column and the second-best value along the last axis.

    Avoids ``argmax``, a variadic reduction many times slower than ``max`` on XLA:CPU.
    With a tie for the best value the second-best equals the best.
    """
    n = values.shape[-1]
    best = jnp.max(values, axis=-1)
    columns = jnp.arange(n, dtype=jnp.int32)
    best_col = jnp.min(jnp.where(values == best[..., None], columns, n), axis=-1)
    best_col = jnp.minimum(best_col, n - 1)  # in range even for a NaN row
    if n == 1:
        return best, best_col, best
    second = jnp.max(jnp.where(columns == best_col[..., None], -jnp.inf, values), axis=-1)
    return best, best_col, second


# The dense variant (accelerators): no data-dependent branch or nested loop in a round.


def dense_bid_round(benefit: Array, state: State, live: Array) -> State:
    """One Jacobi round in which every unassigned row of every unfinished element bids.

    Per-column maxima replace the scatters of :func:`handvae.losses._pooled.bid_round`
    (O(B·N²) fused elementwise work and reductions, no atomics); conflicts resolve as there:
    highest bid, then lowest row.
    """
    n = benefit.shape[1]
    rows = jnp.arange(n, dtype=jnp.int32)
    values = benefit - state.prices[:, None, :]                          # [B, N, N]
    best, best_col, second = top2(values)
    price_best = jnp.take_along_axis(state.prices, best_col, axis=1)
    bid = price_best + (best - second) + state.epsilon[:, None]
    bid = jnp.maximum(bid, jnp.nextafter(price_best, jnp.inf))
    bidding = (state.assignment < 0) & ~state.done[:, None] & live
    bid = jnp.where(bidding, bid, -jnp.inf)
    # on_column[b, i, j]: row i bids on column j.
    on_column = bidding[:, :, None] & (best_col[:, :, None] == rows[None, None, :])
    top_bid = jnp.max(jnp.where(on_column, bid[:, :, None], -jnp.inf), axis=1)   # [B, N]
    candidate = on_column & (bid[:, :, None] == top_bid[:, None, :])
    winner = jnp.min(jnp.where(candidate, rows[None, :, None], n), axis=1)       # [B, N]
    sold = winner < n
    won = bidding & (jnp.take_along_axis(winner, best_col, axis=1) == rows[None, :])
    held = jnp.maximum(state.assignment, 0)
    evicted = (state.assignment >= 0) & jnp.take_along_axis(sold, held, axis=1)
    assignment = jnp.where(won, best_col, jnp.where(evicted, -1, state.assignment))
    return state._replace(prices=jnp.where(sold, top_bid, state.prices),
                          owner=jnp.where(sold, winner, state.owner), assignment=assignment)


def dense_next_phase(benefit: Array, state: State, final_epsilon: Array, scaling: float,
                     live: Array) -> State:
    """:func:`handvae.losses._pooled.next_phase` for all completed elements at once (O(B·N²))."""
    n = benefit.shape[1]
    complete = jnp.all(state.assignment >= 0, axis=-1) & ~state.done & live
    finished = complete & (state.epsilon <= final_epsilon)
    advance = complete & ~finished
    epsilon = jnp.where(advance, jnp.maximum(state.epsilon / scaling, final_epsilon),
                        state.epsilon)
    values = benefit - state.prices[:, None, :]                          # [B, N, N]
    held = jnp.take_along_axis(values, jnp.maximum(state.assignment, 0)[..., None],
                               axis=2)[..., 0]
    keep = (state.assignment >= 0) & (held >= jnp.max(values, axis=2) - epsilon[:, None])
    keep = keep | ~advance[:, None]
    owner = state.owner
    owner = jnp.where((owner < n) & jnp.take_along_axis(keep, jnp.minimum(owner, n - 1),
                                                        axis=1), owner, n)
    return state._replace(assignment=jnp.where(keep, state.assignment, -1), owner=owner,
                          epsilon=epsilon, done=state.done | finished)


def complete_permutation(assignment: Array) -> Array:
    """Gives the free columns, in increasing order, to the unassigned rows (increasing order)."""
    b, n = assignment.shape
    batch = jnp.arange(b)[:, None]
    held = jnp.where(assignment >= 0, assignment, n)   # n: dropped (−1 would wrap around)
    taken = jnp.zeros((b, n), bool).at[batch, held].set(True, mode="drop")
    free_rows = jnp.argsort(assignment >= 0, axis=-1, stable=True)   # unassigned rows first
    free_cols = jnp.argsort(taken, axis=-1, stable=True)             # free columns first
    num_free = jnp.sum(assignment < 0, axis=-1, keepdims=True)
    target = jnp.where(jnp.arange(n)[None, :] < num_free, free_rows, n)   # n: dropped
    return assignment.at[batch, target].set(free_cols.astype(jnp.int32), mode="drop")


def default_variant() -> str:
    """The variant measured fastest on each backend.

    "pooled" on CPU (small rounds, cheap loop iterations); "pallas" on a GPU (the
    Gauss–Seidel kernel: 32×256 hand-like clouds in 4.1 ms on an H200 against 77 ms for
    "dense"; ``benchmarks/figures/h200_2026-11-26``); "dense" elsewhere (TPU: the kernel is
    written for Pallas' Triton lowering and has not run on Mosaic).
    """
    backend = jax.default_backend()
    return {"cpu": "pooled", "gpu": "pallas", "cuda": "pallas"}.get(backend, "dense")


def all_finite(cost: Array) -> Array:
    """[B] bool: no NaN or ±inf in the element's [N, N] cost. From its max and min (NaN and
    ±inf propagate into them), which :func:`cost_scale` computes too: no separate pass."""
    return (jnp.isfinite(jnp.max(cost, axis=(1, 2)))
            & jnp.isfinite(jnp.min(cost, axis=(1, 2))))


def cost_scale(cost: Array) -> Array:
    """[B] per-element cost scale that relative ε is measured in (same unit as the cost).

    max(mean_i min_j cost_ij, mean_j min_i cost_ij, 1e-3 · (max − min cost)). The first two
    are lower bounds on optimum / N (each row, resp. column, pays at least its minimum), so
    for non-negative costs N·ε_rel·scale ≤ ε_rel·optimum unless the floor applies (optimum
    below 1e-3 of the cost range per point, e.g. nearly identical clouds or many duplicated
    points; the floor keeps ε from vanishing there, where bids would crawl). Scaling the costs
    by c > 0 scales it by c: an ε relative to it makes the auction's path unit-free.
    """
    rows = jnp.mean(jnp.min(cost, axis=2), axis=1)
    cols = jnp.mean(jnp.min(cost, axis=1), axis=1)
    spread = jnp.max(cost, axis=(1, 2)) - jnp.min(cost, axis=(1, 2))
    return jnp.maximum(jnp.maximum(rows, cols), 1e-3 * spread)


def warm_start(benefit: Array) -> tuple[Array, Array, Array]:
    """Column reduction: prices, owner and assignment that satisfy complementary slackness.

    Each column's price is its best benefit (p_j = max_i a_ij = −min_i cost_ij, the nearest-
    neighbour table of the columns) and each column goes to its nearest row, one column per
    row (the lowest such column). Every such pair has value a_ij − p_j = 0 ≥ max_k (a_ik − p_k),
    so it satisfies ε-CS for every ε ≥ 0 and survives all phase resets until outbid. Clouds
    whose points are mostly each other's nearest neighbours start mostly assigned.

    Returns:
      prices [B, N], owner [B, N] int32 (N: free), assignment [B, N] int32 (−1: unassigned).
    """
    return warm_start_from_cost(-benefit)


def warm_start_from_cost(cost: Array) -> tuple[Array, Array, Array]:
    """:func:`warm_start` of the benefit −cost, computed from the cost (the same result, and
    no [B, N, N] negated copy is materialised)."""
    n = cost.shape[1]
    index = jnp.arange(n, dtype=jnp.int32)
    nearest = jnp.min(cost, axis=1)                                      # [B, N] over rows
    prices = -nearest
    nearest_row = jnp.min(jnp.where(cost == nearest[:, None, :], index[None, :, None], n),
                          axis=1)                                        # [B, N], lowest row
    nearest_row = jnp.minimum(nearest_row, n - 1)
    claims = nearest_row[:, None, :] == index[None, :, None]             # [B, row, col]
    column = jnp.min(jnp.where(claims, index[None, None, :], n), axis=2)  # lowest claimed col
    assignment = jnp.where(column < n, column, -1).astype(jnp.int32)
    kept = jnp.take_along_axis(assignment, nearest_row, axis=1) == index[None, :]
    owner = jnp.where(kept, nearest_row, n).astype(jnp.int32)
    return prices, owner, assignment


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6, 7))
def solve(cost: Array, final_epsilon: Array, start_epsilon: Array, scaling: float,
          max_iterations: int, variant: str = "pooled", rounds_per_iteration: int = 1,
          warm: bool = True) -> tuple[Array, Array, Array]:
    """Runs the auction on [B, N, N] costs: (assignment [B, N], converged [B], iterations).

    ``final_epsilon`` / ``start_epsilon``: [B] ε of the last / first phase in cost units.
    ``variant`` "pooled": one round per loop iteration, up to k bidders pooled over the batch,
    phase changes one element at a time. "dense": all unassigned rows bid in every round,
    phase changes vectorised, ``rounds_per_iteration`` rounds per loop iteration.
    ``warm``: start from :func:`warm_start` (else zero prices, nothing assigned).
    """
    b, n, _ = cost.shape
    dtype = cost.dtype
    finite = all_finite(cost)
    # Elements with NaN/inf never bid (done from the start). "dense" zeroes their benefit so
    # that no NaN reaches the arithmetic shared with the other elements; "pooled" reads only
    # the rows and columns of elements with bidders, so it negates the cost where it reads it
    # (no [B, N, N] benefit is materialised).
    benefit = -cost if variant == "pooled" else jnp.where(finite[:, None, None], -cost, 0.0)
    final_epsilon = jnp.where(finite, final_epsilon, 1.0).astype(dtype)
    start = jnp.maximum(jnp.where(finite, start_epsilon, 1.0), final_epsilon).astype(dtype)
    if warm:
        prices, owner, assignment = (warm_start_from_cost(cost) if variant == "pooled"
                                     else warm_start(benefit))
    else:
        prices, owner = jnp.zeros((b, n), dtype), jnp.full((b, n), n, jnp.int32)
        assignment = jnp.full((b, n), -1, jnp.int32)
    state = State(prices=prices, owner=owner, assignment=assignment, epsilon=start,
                  done=~finite, iteration=jnp.zeros((), jnp.int32))

    def cond(state):
        return jnp.any(~state.done) & (state.iteration < max_iterations)

    if variant == "dense":
        def dense_body(state):
            for _ in range(rounds_per_iteration):
                live = cond(state)   # False: this round and the rest are exact no-ops
                state = dense_bid_round(benefit, state, live)
                state = dense_next_phase(benefit, state, final_epsilon, scaling, live)
                state = state._replace(iteration=state.iteration + live.astype(jnp.int32))
            return state

        state = jax.lax.while_loop(cond, dense_body, state)
    elif variant == "pooled":
        from handvae.losses import _pooled   # imports this module (State, top2)
        state = _pooled.pooled_loop(cost, state, final_epsilon, scaling, max_iterations)
    else:
        raise ValueError(f"variant must be 'pooled' or 'dense', got {variant!r}.")
    identity = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (b, n))
    assignment = jnp.where(finite[:, None], state.assignment, identity)
    if variant == "pooled":   # skip the two sorts when every row holds a column (converged)
        assignment = jax.lax.cond(jnp.any(assignment < 0), complete_permutation,
                                  lambda assignment: assignment, assignment)
    else:
        assignment = complete_permutation(assignment)
    return assignment, state.done & finite, state.iteration
