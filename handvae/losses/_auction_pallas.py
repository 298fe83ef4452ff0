"""The dense auction as one Pallas kernel: a whole batch element per program, all rounds in it.

On a GPU the dense variant of :mod:`handvae.losses._auction` runs R rounds per
``lax.while_loop`` iteration and still pays a device→host sync per iteration (launch-bound:
~10 µs of arithmetic per round on an H100). Here ``pallas_call`` runs one program per batch
element (grid (B,)), and each program holds its [N, N] benefit and its state (prices, owners,
assignment, ε) on chip and runs every phase and round of its auction in an in-kernel
``lax.while_loop``: one launch per solve, no host round trip, elements finish independently.

The round is :func:`handvae.losses._auction.dense_bid_round` (every unassigned row bids;
highest bid wins a column, ties to the lowest row) written without gathers or scatters, which
GPU Pallas lacks: every lookup is a masked reduction over an [N, N] tile, O(N²) per round.
The phase change is :func:`handvae.losses._auction.dense_next_phase`. Bids move a price by at
least a relative 2.4e-7 (~2 float32 ulps) in place of ``nextafter``.

On CPU (no Pallas lowering) the kernel runs in Pallas' interpreter (``interpret=True``); that
checks the kernel's logic, not its speed. GPU timings: ``benchmarks/losses.py --variant
pallas`` on a CUDA machine (still to be measured: no GPU was available when it was written).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from handvae.losses import _auction

Array = jax.Array

_ULP = 2.4e-7   # relative price step that float32 rounding cannot swallow (2 ulps)


def _any(mask: Array, axis: int | None = None) -> Array:
    """``jnp.any`` as an int32 max (Pallas' Triton lowering has no boolean reductions)."""
    return jnp.max(mask.astype(jnp.int32), axis=axis) > 0


def _pick(mask: Array, values: Array, axis: int, fill) -> Array:
    """values at the (single) True of each row/column of ``mask``: a gather as a reduction."""
    return jnp.max(jnp.where(mask, values, fill), axis=axis)


def _kernel(benefit_ref, prices_ref, owner_ref, assignment_ref, params_ref,
            assignment_out, stats_out, *, scaling: float, max_iterations: int):
    """One batch element: ε-scaled dense auction from the given (warm) start to the end.

    params_ref [N] float: [0] final ε, [1] first ε, [2] 1.0 when the element is skipped.
    Writes the assignment [N] (−1: unassigned) and stats [N] int32 ([0] converged, [1] rounds).
    """
    benefit = benefit_ref[...]                                           # [N, N]
    n = benefit.shape[0]
    slot = jnp.arange(n, dtype=jnp.int32)           # 1-D iotas, broadcast (portable lowering)
    cols = jnp.broadcast_to(slot[None, :], (n, n))
    rows = jnp.broadcast_to(slot[:, None], (n, n))
    params = params_ref[...]
    final_eps = _pick(slot == 0, params, 0, -jnp.inf)
    start_eps = _pick(slot == 1, params, 0, -jnp.inf)
    skipped = _pick(slot == 2, params, 0, -jnp.inf) > 0.5
    neg = jnp.asarray(-jnp.inf, benefit.dtype)

    def round_(carry):
        prices, owner, assignment, eps, _, it = carry
        values = benefit - prices[None, :]
        best = jnp.max(values, axis=1)
        best_col = jnp.minimum(jnp.min(jnp.where(values == best[:, None], cols, n), axis=1),
                               n - 1)
        at_best = cols == best_col[:, None]                              # [row, col]
        second = jnp.max(jnp.where(at_best, neg, values), axis=1)
        price_best = _pick(at_best, jnp.broadcast_to(prices[None, :], (n, n)), 1, neg)
        bid = price_best + (best - second) + eps
        bid = jnp.maximum(bid, price_best + jnp.abs(price_best) * _ULP + 1e-30)
        bidding = assignment < 0
        on_column = bidding[:, None] & at_best
        top_bid = jnp.max(jnp.where(on_column, bid[:, None], neg), axis=0)          # [col]
        candidate = on_column & (bid[:, None] == top_bid[None, :])
        winner = jnp.min(jnp.where(candidate, rows, n), axis=0)                     # [col]
        sold = winner < n
        won = bidding & (_pick(at_best, jnp.broadcast_to(winner[None, :], (n, n)), 1, -1)
                         == slot)
        at_held = cols == assignment[:, None]                            # none when −1
        evicted = (assignment >= 0) & _any(at_held & sold[None, :], axis=1)
        assignment = jnp.where(won, best_col, jnp.where(evicted, -1, assignment))
        prices = jnp.where(sold, top_bid, prices)
        owner = jnp.where(sold, winner, owner)
        # Phase change once every row is assigned: done at the final ε, else shrink ε and
        # unassign the pairs that violate ε-CS for the new ε.
        complete = ~_any(assignment < 0)
        finished = complete & (eps <= final_eps)
        advance = complete & ~finished
        new_eps = jnp.where(advance, jnp.maximum(eps / scaling, final_eps), eps)
        values = benefit - prices[None, :]
        at_held = cols == assignment[:, None]
        held = _pick(at_held, values, 1, neg)
        keep = (held >= jnp.max(values, axis=1) - new_eps) | ~advance
        keep_col = _any(at_held & keep[:, None], axis=0)              # column's owner kept
        assignment = jnp.where(keep, assignment, -1)
        owner = jnp.where(keep_col, owner, n)
        return prices, owner, assignment, new_eps, finished.astype(jnp.int32), it + 1

    def cond(carry):
        return (carry[4] == 0) & (carry[5] < max_iterations)

    init = (prices_ref[...], owner_ref[...], assignment_ref[...], start_eps,
            skipped.astype(jnp.int32), jnp.int32(0))
    _, _, assignment, _, done, it = jax.lax.while_loop(cond, round_, init)
    assignment_out[...] = assignment
    converged = done * (1 - skipped.astype(jnp.int32))
    stats_out[...] = jnp.where(slot == 0, converged, jnp.where(slot == 1, it, 0))


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6))
def solve(cost: Array, final_epsilon: Array, start_epsilon: Array, scaling: float,
          max_iterations: int, warm: bool = True, interpret: bool | None = None
          ) -> tuple[Array, Array, Array]:
    """:func:`handvae.losses._auction.solve` with variant "pallas".

    Args:
      cost: [B, N, N] float32 costs.
      final_epsilon, start_epsilon: [B] ε of the last / first phase in cost units.
      scaling: θ ≥ 1.
      max_iterations: bound on the rounds of each element.
      warm: start from :func:`handvae.losses._auction.warm_start`.
      interpret: run in Pallas' interpreter; None: on CPU only.

    Returns:
      (assignment [B, N] int32 permutation, converged [B] bool, iterations: int32 scalar,
      the most rounds any element ran).
    """
    if interpret is None:
        interpret = jax.default_backend() == "cpu"
    b, n, _ = cost.shape
    if n < 3:   # the kernel packs three parameters per element into an [N] row
        cost = jnp.pad(cost, ((0, 0), (0, 3 - n), (0, 3 - n)))
        padded = _pad_diagonal(cost, n)
        assignment, converged, iterations = solve(padded, final_epsilon, start_epsilon,
                                                  scaling, max_iterations, warm, interpret)
        return assignment[:, :n], converged, iterations
    dtype = cost.dtype
    finite = jnp.all(jnp.isfinite(cost), axis=(1, 2))
    benefit = jnp.where(finite[:, None, None], -cost, 0.0)
    final = jnp.where(finite, final_epsilon, 1.0).astype(dtype)
    start = jnp.maximum(jnp.where(finite, start_epsilon, 1.0), final).astype(dtype)
    if warm:
        prices, owner, assignment = _auction.warm_start(benefit)
    else:
        prices, owner = jnp.zeros((b, n), dtype), jnp.full((b, n), n, jnp.int32)
        assignment = jnp.full((b, n), -1, jnp.int32)
    slot = jnp.arange(n)[None, :]
    params = jnp.where(slot == 0, final[:, None], jnp.where(
        slot == 1, start[:, None], jnp.where(slot == 2, (~finite)[:, None].astype(dtype), 0)))
    row = pl.BlockSpec((pl.squeezed, n), lambda i: (i, 0))
    kernel = functools.partial(_kernel, scaling=float(scaling), max_iterations=max_iterations)
    assignment, stats = pl.pallas_call(
        kernel, grid=(b,),
        in_specs=[pl.BlockSpec((pl.squeezed, n, n), lambda i: (i, 0, 0)), row, row, row, row],
        out_specs=[row, row],
        out_shape=[jax.ShapeDtypeStruct((b, n), jnp.int32),
                   jax.ShapeDtypeStruct((b, n), jnp.int32)],
        interpret=interpret)(benefit, prices, owner, assignment, params.astype(dtype))
    identity = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (b, n))
    assignment = _auction.complete_permutation(jnp.where(finite[:, None], assignment, identity))
    return assignment, (stats[:, 0] > 0) & finite, jnp.max(stats[:, 1])


def _pad_diagonal(cost: Array, n: int) -> Array:
    """Pads [B, N, N] (N < 3) to 3×3: padded rows cost 0 on their own column, large elsewhere,
    so the padding matches itself and the real block's assignment is unchanged."""
    size = cost.shape[1]
    index = jnp.arange(size)
    pad_row = index[:, None] >= n
    pad_col = index[None, :] >= n
    big = 1.0 + 2.0 * jnp.max(jnp.abs(jnp.where(pad_row | pad_col, 0.0, cost)), axis=(1, 2))
    diagonal = index[:, None] == index[None, :]
    fill = jnp.where(diagonal, 0.0, big[:, None, None])
    return jnp.where(pad_row | pad_col, fill, cost)
