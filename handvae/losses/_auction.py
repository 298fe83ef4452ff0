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
