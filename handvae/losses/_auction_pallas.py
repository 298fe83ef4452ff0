"""The auction as one Pallas kernel: a whole batch element per program, all bids in it.

On a GPU the dense variant of :mod:`handvae.losses._auction` runs R Jacobi rounds per
``lax.while_loop`` iteration and pays a launch and a device→host sync per iteration
(launch-bound, ~20 µs per round on an H200). Here ``pallas_call`` runs one program per batch
element (grid (B,)); each program keeps its state (prices, assignment, ε) on chip and runs
every phase and bid of its auction in in-kernel loops: one launch per solve, no host round
trip, elements finish independently.

Bids are Gauss–Seidel: one bidder at a time (the row the last bid evicted, else the lowest
unassigned row). It loads only its row of the benefit from the input Ref at a dynamic index,
finds its best and second-best column against the prices (reductions over [N]), raises that
column's price by the usual bid and takes it; the row that held it (found as
``assignment == column``, no lookup) becomes unassigned. A bid is O(N). The first version,
a Jacobi round over the whole [N, N] tile (every unassigned row bids), was O(N²) per round
although 51 % of its rounds had one bidder (H200: 0.5 ms per round, 1.93 s for 32×256
hand-like clouds). Every bid is counted as a round in ``iterations``.

When an ε-phase completes (no unassigned row) ε shrinks by θ and the pairs that violate
ε-CS for the new ε are unassigned (:func:`handvae.losses._auction.dense_next_phase`), in
blocks of rows loaded from the Ref, O(N²) per phase. Lookups are masked reductions and
updates ``jnp.where`` (GPU Pallas has no gathers or scatters on values); boolean reductions
are int32 max/min and iotas 1-D (Triton lowering). Bids move a price by at least a relative
2.4e-7 (~2 float32 ulps) in place of ``nextafter``. N is padded to a power of two ≥ 4
(Triton block shapes) with rows that keep their own column.

On CPU (no Pallas lowering) the kernel runs in Pallas' interpreter (``interpret=True``); that
checks the kernel's logic, not its speed. GPU timings: ``benchmarks/losses.py --variant
pallas`` on a CUDA machine.

Design notes and measurements (moved from WORKSPACE.md)

`variant="pallas"` (`_auction_pallas.py`) is a Gauss–Seidel auction as one Pallas kernel:
grid (B,), one program per batch element running every ε-phase and bid in in-kernel loops (one
launch per solve, no host sync). A bid is O(N): the bidder (the row the last bid evicted,
else the lowest unassigned row; ~6 % fewer bids than always the lowest) loads only its row of
the benefit from the input Ref at a dynamic index (`benefit_ref[pl.ds(i, 1), :]`), finds best
and second-best column against the prices by reductions over [N], raises one price and takes
the column; its previous holder is `assignment == column` (no owner vector). A phase change
(ε/θ, unassign ε-CS violators) reads the benefit in row blocks sized to the warps, O(N²) per
phase. Triton constraints honoured: no gathers/scatters on values (masked reductions,
`jnp.where`), no boolean reductions (int32 max/min), 1-D iotas, N padded to a power of two ≥ 4
with rows that keep their own column; `num_warps` = N/256 clamped to 1..8 (env
`HANDVAE_PALLAS_NUM_WARPS` overrides, for tuning). The paper is silent (it uses the
approximate EMD of Fan et al. for training); the choice is ours for speed. Why: the first
version (every unassigned row bids over the whole [N, N] tile, O(N²) per round) matched the
dense variant exactly but took 1.93 s for 32×256 hand-like clouds on an H200 (0.5 ms per
round; 51 % of rounds had one bidder). Gauss–Seidel needs more rounds, each a single bid
(counted honestly in `iterations`): 32×256 hand-like clouds (benchmark's seed) 4,441 bids per
element on average, max 6,868 (dense: 3,936 Jacobi rounds), gap to scipy mean 1.8e-5, max
1.1e-4; 8×1024: 21–29k bids, 8×2048: 61–71k, all converged, 3–4× under the default bound
(Pallas interpreter on CPU; the ε schedule θ, ε₀ barely changes the count: 4.6–6.6k mean
bids over θ ∈ 5..40). Jacobi rounds for the many-unassigned start of a phase were not kept: a
row-blocked [N, N] round costs ~70 bids' worth of reductions. Tests compare the kernel with a
NumPy reference of the same algorithm (assignment and bid count), plus permutation, flags,
N·ε bound, NaN/inf, m/dm/mm, padded N, cut-off. Measured on one H200 (2026-11-26, jax 0.11.2,
`benchmarks/figures/h200_2026-11-26/`): 32×256 hand-like 4.1 ms (scipy on the host 0.145 s:
35×; dense XLA 77 ms: 19×), uniform 2.7 ms (61×), 8×1024 hand-like 28.6 ms (47×), gaps
~1e-5 in m, dm and mm alike; 4 warps are slower than 1 at N = 256 (5.1 ms). So "pallas" is
the default variant on a GPU (`_auction.default_variant`). The paper-scale S4 step went from
12.25 (dense) to 57.7 steps/s, 40 % of R2P's 143.7; the solve is ~4 ms of its 17.3 ms, the
rest is S4's model (second encoder, width-1024 heat-map decoder, FoldingNet), so issue 13's
70 % of R2P is out of reach of the auction alone (a free EMD would give ≤ ~54 %). How far below
70 % the model itself sits is counted, not guessed: XLA's cost analysis of the
lowered paper-size steps (before its passes, so cuDNN's convolutions count; the same on any
backend; `model_flops` in `benchmarks/train_step.py`) gives R2P 418 GFLOP and S4 724 GFLOP
per step (S4's heat-map decoder and FoldingNet decode all three latents, 96 rows, as
Alg. 3's L_R + L_C + L_RC require). S4 does 1.73× R2P's arithmetic, so at R2P's efficiency
it cannot run faster than 58 % of R2P's rate; 70 % would need S4 to be 1.2× as efficient as
R2P's step. The measured 41 % is 71 % of that ceiling (the auction's ~3.5 ms, sequential, is
most of the rest). Reaching 70 % means changing the paper's model (narrower heat-map
decoder, fewer decoded latents) or its precision, which this project does not do by default.
"""

from __future__ import annotations

import functools
import os
import warnings

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from handvae.losses import _auction

Array = jax.Array

_ULP = 2.4e-7   # relative price step that float32 rounding cannot swallow (2 ulps)


def _any(mask: Array, axis: int | None = None) -> Array:
    """``jnp.any`` as an int32 max (Pallas' Triton lowering has no boolean reductions)."""
    return jnp.max(mask.astype(jnp.int32), axis=axis) > 0


def _pick(mask: Array, values: Array, axis: int | None, fill) -> Array:
    """values at the (single) True of ``mask``: a gather as a reduction."""
    return jnp.max(jnp.where(mask, values, fill), axis=axis)


def _first_unassigned(assignment: Array, slot: Array) -> Array:
    """Lowest row with assignment −1; N when every row is assigned (int32 scalar)."""
    return jnp.min(jnp.where(assignment < 0, slot, slot.shape[0]))


def _bid(benefit_ref, prices: Array, assignment: Array, bidder: Array, eps: Array,
         slot: Array) -> tuple[Array, Array, Array]:
    """Row ``bidder`` bids for its best column, O(N).

    Returns the new prices and assignment and the next bidder: the row this bid evicted, else
    the lowest unassigned row, else N (last-in-first-out along eviction chains: ~6 % fewer
    bids than always the lowest row on hand-like clouds, and the reductions that find it run
    alongside the ones that price the bid).
    """
    n = slot.shape[0]
    row = benefit_ref[pl.ds(bidder, 1), :].reshape(n)                    # [N] from the Ref
    values = row - prices
    best = jnp.max(values)
    best_col = jnp.minimum(jnp.min(jnp.where(values == best, slot, n)), n - 1)
    at_best = slot == best_col
    second = jnp.max(jnp.where(at_best, -jnp.inf, values))
    price_best = _pick(at_best, prices, None, -jnp.inf)
    bid = price_best + (best - second) + eps
    bid = jnp.maximum(bid, price_best + jnp.abs(price_best) * _ULP + 1e-30)
    prices = jnp.where(at_best, bid, prices)
    # The previous holder of best_col (if any) is the row whose assignment is best_col.
    holder = assignment == best_col
    evicted = jnp.max(jnp.where(holder, slot, -1))
    waiting = jnp.min(jnp.where((assignment < 0) & (slot != bidder), slot, n))
    assignment = jnp.where(slot == bidder, best_col, jnp.where(holder, -1, assignment))
    return prices, assignment, jnp.where(evicted >= 0, evicted, waiting)


def _repair(benefit_ref, prices: Array, assignment: Array, eps: Array, slot: Array,
            block: int) -> Array:
    """Unassigns the rows whose pair violates ε-CS (held value < best value − ε), O(N²),
    ``block`` rows of the benefit at a time."""
    n = slot.shape[0]
    offsets = jnp.arange(block, dtype=jnp.int32)

    def body(r, assignment):
        start = r * block
        values = benefit_ref[pl.ds(start, block), :] - prices[None, :]   # [block, N]
        mine = (start + offsets)[:, None] == slot[None, :]               # [block row, N row]
        held_col = _pick(mine, jnp.broadcast_to(assignment[None, :], (block, n)), 1, -1)
        held = _pick(slot[None, :] == held_col[:, None], values, 1, -jnp.inf)
        keep = held >= jnp.max(values, axis=1) - eps                     # False: unassigned
        drop = _any(mine & ~keep[:, None], axis=0)                       # [N row]
        return jnp.where(drop, -1, assignment)

    return jax.lax.fori_loop(0, n // block, body, assignment)


def _kernel(benefit_ref, prices_ref, assignment_ref, params_ref, assignment_out, stats_out,
            *, scaling: float, max_iterations: int, block: int):
    """One batch element: ε-scaled Gauss–Seidel auction from the given (warm) start to the end.

    params_ref [N] float: [0] final ε, [1] first ε, [2] 1.0 when the element is skipped.
    Writes the assignment [N] (−1: unassigned) and stats [N] int32 ([0] converged, [1] bids).
    """
    n = assignment_ref.shape[0]
    slot = jnp.arange(n, dtype=jnp.int32)
    params = params_ref[...]
    final_eps = _pick(slot == 0, params, None, -jnp.inf)
    start_eps = _pick(slot == 1, params, None, -jnp.inf)
    skipped = (_pick(slot == 2, params, None, -jnp.inf) > 0.5).astype(jnp.int32)

    def bidding(carry):
        _, _, bidder, it = carry
        return (bidder < n) & (it < max_iterations)

    def phase(carry):
        """Bids until every row is assigned (or the bound), then the phase change."""
        prices, assignment, eps, _, it = carry

        def bid(carry):
            prices, assignment, bidder, it = carry
            prices, assignment, bidder = _bid(benefit_ref, prices, assignment, bidder, eps,
                                              slot)
            return prices, assignment, bidder, it + 1

        prices, assignment, bidder, it = jax.lax.while_loop(
            bidding, bid, (prices, assignment, _first_unassigned(assignment, slot), it))
        complete = bidder >= n
        finished = complete & (eps <= final_eps)
        advance = complete & ~finished
        new_eps = jnp.where(advance, jnp.maximum(eps / scaling, final_eps), eps)
        repaired = _repair(benefit_ref, prices, assignment, new_eps, slot, block)
        assignment = jnp.where(advance, repaired, assignment)
        return prices, assignment, new_eps, finished.astype(jnp.int32), it

    def running(carry):
        return (carry[3] == 0) & (carry[4] < max_iterations)

    init = (prices_ref[...], assignment_ref[...], start_eps, skipped, jnp.int32(0))
    _, assignment, _, done, it = jax.lax.while_loop(running, phase, init)
    assignment_out[...] = assignment
    converged = done * (1 - skipped)
    stats_out[...] = jnp.where(slot == 0, converged, jnp.where(slot == 1, it, 0))


def _padded_size(n: int) -> int:
    """Power of two ≥ max(n, 4): Triton block shapes; three parameters packed per row."""
    return max(4, 1 << (n - 1).bit_length())


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6, 7))
def solve(cost: Array, final_epsilon: Array, start_epsilon: Array, scaling: float,
          max_iterations: int, warm: bool = True, interpret: bool | None = None,
          block_rows: int | None = None) -> tuple[Array, Array, Array]:
    """:func:`handvae.losses._auction.solve` with variant "pallas".

    Args:
      cost: [B, N, N] float32 costs.
      final_epsilon, start_epsilon: [B] ε of the last / first phase in cost units.
      scaling: θ ≥ 1.
      max_iterations: bound on the bids (rounds) of each element.
      warm: start from :func:`handvae.losses._auction.warm_start`.
      interpret: run in Pallas' interpreter; None: on CPU only.
      block_rows: rows per block of the phase change (a power of two ≤ N); None: by N and
        the warps (~32 values per thread).

    Returns:
      (assignment [B, N] int32 permutation, converged [B] bool, iterations: int32 scalar,
      the most bids any element ran).
    """
    if interpret is None:
        interpret = jax.default_backend() == "cpu"
    b, n, _ = cost.shape
    size = _padded_size(n)
    if size != n:
        cost = jnp.pad(cost, ((0, 0), (0, size - n), (0, size - n)))
        padded = _pad_diagonal(cost, n)
        assignment, converged, iterations = solve(padded, final_epsilon, start_epsilon,
                                                  scaling, max_iterations, warm, interpret,
                                                  block_rows)
        # A real row on a padding column (possible only with ε near the cost range) is
        # unassigned and completed like any other.
        real = assignment[:, :n]
        return (_auction.complete_permutation(jnp.where(real < n, real, -1)), converged,
                iterations)
    dtype = cost.dtype
    finite = jnp.all(jnp.isfinite(cost), axis=(1, 2))
    benefit = jnp.where(finite[:, None, None], -cost, 0.0)
    final = jnp.where(finite, final_epsilon, 1.0).astype(dtype)
    start = jnp.maximum(jnp.where(finite, start_epsilon, 1.0), final).astype(dtype)
    if warm:
        prices, _, assignment = _auction.warm_start(benefit)
    else:
        prices, assignment = jnp.zeros((b, n), dtype), jnp.full((b, n), -1, jnp.int32)
    slot = jnp.arange(n)[None, :]
    params = jnp.where(slot == 0, final[:, None], jnp.where(
        slot == 1, start[:, None], jnp.where(slot == 2, (~finite)[:, None].astype(dtype), 0)))
    row = pl.BlockSpec((pl.squeezed, n), lambda i: (i, 0))
    warps = num_warps(n)
    kernel = functools.partial(_kernel, scaling=float(scaling), max_iterations=max_iterations,
                               block=block_rows or _block_rows(n, warps))
    assignment, stats = pl.pallas_call(
        kernel, grid=(b,),
        in_specs=[pl.BlockSpec((pl.squeezed, n, n), lambda i: (i, 0, 0)), row, row, row],
        out_specs=[row, row],
        out_shape=[jax.ShapeDtypeStruct((b, n), jnp.int32),
                   jax.ShapeDtypeStruct((b, n), jnp.int32)],
        interpret=interpret, **_compiler_params(interpret, warps))(
            benefit, prices, assignment, params.astype(dtype))
    identity = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (b, n))
    assignment = _auction.complete_permutation(jnp.where(finite[:, None], assignment, identity))
    return assignment, (stats[:, 0] > 0) & finite, jnp.max(stats[:, 1])


def num_warps(n: int) -> int:
    """Triton warps per program for N points: 1 up to N = 256, doubling with N up to 8.

    A bid is a chain of reductions over [N]; within one warp they are register shuffles,
    across warps each adds a shared-memory round trip and a barrier, so few warps keep a bid
    short; the phase change works on row blocks sized to the warps. Override with
    the environment variable HANDVAE_PALLAS_NUM_WARPS (tuning on a GPU).
    """
    override = os.environ.get("HANDVAE_PALLAS_NUM_WARPS")
    if override:
        if override not in ("1", "2", "4", "8", "16", "32"):
            raise ValueError(f"HANDVAE_PALLAS_NUM_WARPS must be a power of two from 1 to 32, "
                             f"got {override!r}; unset it for the default (N / 256 in 1..8)")
        return int(override)
    return int(min(8, max(1, n // 256)))


def _block_rows(n: int, warps: int) -> int:
    """Rows per block of the phase change: ~32 values per thread ([block, N] over 32·warps
    threads), a power of two in [1, N]."""
    return int(max(1, min(n, 1024 * warps // n)))


def _compiler_params(interpret: bool, warps: int) -> dict:
    """``compiler_params`` for Triton (:func:`num_warps`); none in the interpreter."""
    if interpret:
        return {}
    try:
        from jax.experimental.pallas import triton as pallas_triton
        return {"compiler_params": pallas_triton.CompilerParams(num_warps=warps)}
    except (ImportError, AttributeError):    # another Pallas API: Triton's defaults
        warnings.warn("jax.experimental.pallas.triton.CompilerParams is missing from this JAX; "
                      f"the auction kernel runs with Triton's default warps instead of {warps} "
                      "(slower, same result)", RuntimeWarning, stacklevel=3)
        return {}


def _pad_diagonal(cost: Array, n: int) -> Array:
    """Pads [B, N, N] to a larger size: padded rows cost 0 on their own column, large
    elsewhere, so the padding matches itself and the real block's assignment is unchanged."""
    size = cost.shape[1]
    index = jnp.arange(size)
    pad_row = index[:, None] >= n
    pad_col = index[None, :] >= n
    big = 1.0 + 2.0 * jnp.max(jnp.abs(jnp.where(pad_row | pad_col, 0.0, cost)), axis=(1, 2))
    diagonal = index[:, None] == index[None, :]
    fill = jnp.where(diagonal, 0.0, big[:, None, None])
    return jnp.where(pad_row | pad_col, fill, cost)
