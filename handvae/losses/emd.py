"""Earth mover's distance by Bertsekas' auction algorithm (Eq. 9 of Yang et al. 2019).

The assignment problem min_σ Σ_i cost[i, σ(i)] over permutations σ is solved by the forward
auction (Bertsekas 1988; Bertsekas & Castañon 1991) on the benefit a = −cost: unassigned rows
("persons") bid for their best column ("object") at the price that makes it only ε better than
their second-best; each column goes to its highest bidder and its price rises to that bid.
Bids are Jacobi-style: every unassigned row of every batch element bids in the same step,
vectorised as [B, N, N] array operations, and conflicts on a column are resolved by the highest
bid, ties by the lowest row index (deterministic).

ε-complementary slackness holds for every assigned pair throughout, so on termination the
assignment's cost is within N·ε of the optimum (and optimal for integer costs when ε < 1/N).
ε-scaling runs phases with ε = ε₀, ε₀/θ, ..., ε (θ = ``epsilon_scaling``); prices carry over
between phases and pairs that still satisfy ε-CS for the new ε stay assigned, so later phases
only repair a few rows. All phases of all batch elements run in one ``lax.while_loop`` bounded
by ``max_iterations``; each batch element has its own ε schedule (ε₀ from its own cost range)
and stops on its own.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from handvae.losses import _validation
from handvae.losses.chamfer import pairwise_squared_distances, safe_sqrt

Array = jax.Array


class AuctionOutput(NamedTuple):
    """Result of :func:`auction_assignment`.

    Attributes:
      assignment: [B, N] int32; ``assignment[b, i]`` is the column given to row i. Always a
        permutation of 0..N−1, also when not converged (unassigned rows then get the free
        columns in increasing order).
      cost: [B] total cost Σ_i cost[b, i, assignment[b, i]] (NaN where the input had NaN).
      converged: [B] bool; True where the final-ε phase completed (the N·ε guarantee holds).
      iterations: int32 scalar, bidding rounds run for the whole batch.
    """
    assignment: Array
    cost: Array
    converged: Array
    iterations: Array


class _State(NamedTuple):
    prices: Array      # [B, N] column prices (benefit units)
    owner: Array       # [B, N] int32 row owning column j, N when free
    epsilon: Array     # [B] current ε
    done: Array        # [B] bool, final phase complete (or input invalid)
    iteration: Array   # int32


def _row_to_column(owner: Array) -> Array:
    """[B, N] owner (column → row, N = free) to [B, N] assignment (row → column, -1 = none)."""
    b, n = owner.shape
    batch = jnp.arange(b)[:, None]
    columns = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (b, n))
    return jnp.full((b, n), -1, jnp.int32).at[batch, owner].set(columns, mode="drop")


def _top2(values: Array) -> tuple[Array, Array, Array]:
    """Best value, its column and the second-best value along the last axis."""
    best_col = jnp.argmax(values, axis=-1)
    best = jnp.take_along_axis(values, best_col[..., None], axis=-1)[..., 0]
    if values.shape[-1] == 1:
        return best, best_col, best
    is_best = jnp.arange(values.shape[-1]) == best_col[..., None]
    second = jnp.max(jnp.where(is_best, -jnp.inf, values), axis=-1)
    return best, best_col, second


def _bid_round(benefit: Array, state: _State) -> tuple[Array, Array]:
    """One Jacobi bidding round: new (prices, owner)."""
    b, n, _ = benefit.shape
    batch = jnp.arange(b)[:, None]
    rows = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (b, n))
    assigned_col = _row_to_column(state.owner)
    bidding = (assigned_col < 0) & ~state.done[:, None]                  # [B, N]
    values = benefit - state.prices[:, None, :]                          # [B, N, N]
    best, best_col, second = _top2(values)
    price_best = jnp.take_along_axis(state.prices, best_col, axis=-1)
    bid = price_best + (best - second) + state.epsilon[:, None]
    # Guarantee progress when ε is below the float spacing of the price.
    bid = jnp.maximum(bid, jnp.nextafter(price_best, jnp.inf))
    bid = jnp.where(bidding, bid, -jnp.inf)
    top_bid = jnp.full((b, n), -jnp.inf, bid.dtype).at[batch, best_col].max(bid)
    wins = bidding & (bid == jnp.take_along_axis(top_bid, best_col, axis=-1))
    winner = jnp.full((b, n), n, jnp.int32).at[batch, best_col].min(jnp.where(wins, rows, n))
    has_winner = winner < n
    prices = jnp.where(has_winner, top_bid, state.prices)
    owner = jnp.where(has_winner, winner, state.owner)
    return prices, owner


def _next_phase(benefit: Array, prices: Array, owner: Array, epsilon: Array, done: Array,
                final_epsilon: Array, scaling: float) -> tuple[Array, Array, Array]:
    """Ends the phase of elements with every row assigned: done, or ε ← ε/θ keeping ε-CS pairs."""
    b, n, _ = benefit.shape
    complete = jnp.all(owner < n, axis=-1) & ~done
    finished = complete & (epsilon <= final_epsilon)
    advance = complete & ~finished
    new_epsilon = jnp.where(advance, jnp.maximum(epsilon / scaling, final_epsilon), epsilon)

    def keep_slack_pairs(owner):
        values = benefit - prices[:, None, :]
        best = jnp.max(values, axis=-1)                                   # [B, N] per row
        col = jnp.broadcast_to(jnp.arange(n), (b, n))
        owner_safe = jnp.minimum(owner, n - 1)
        value_owned = values[jnp.arange(b)[:, None], owner_safe, col]      # [B, N] per column
        best_of_owner = jnp.take_along_axis(best, owner_safe, axis=-1)
        keep = value_owned >= best_of_owner - new_epsilon[:, None]
        return jnp.where(advance[:, None] & ~keep, n, owner)

    owner = jax.lax.cond(jnp.any(advance), keep_slack_pairs, lambda o: o, owner)
    return owner, new_epsilon, done | finished


def _complete_permutation(assignment: Array) -> Array:
    """Gives the free columns, in increasing order, to the unassigned rows (increasing order)."""
    b, n = assignment.shape
    batch = jnp.arange(b)[:, None]
    taken = jnp.zeros((b, n), bool).at[batch, assignment].set(True, mode="drop")
    free_rows = jnp.argsort(assignment >= 0, axis=-1, stable=True)   # unassigned rows first
    free_cols = jnp.argsort(taken, axis=-1, stable=True)             # free columns first
    num_free = jnp.sum(assignment < 0, axis=-1, keepdims=True)
    slot = jnp.arange(n)[None, :]
    target = jnp.where(slot < num_free, free_rows, n)                # n: dropped
    return assignment.at[batch, target].set(free_cols.astype(jnp.int32), mode="drop")


def auction_assignment(cost: Array, *, epsilon: float = 1e-3, epsilon_scaling: float = 5.0,
                       max_iterations: int = 10_000, initial_epsilon: float | None = None
                       ) -> AuctionOutput:
    """Minimum-cost assignment of rows to columns by the ε-scaled auction algorithm.

    Guarantee: where ``converged[b]``, Σ_i cost[b, i, assignment[b, i]] ≤ optimum + N·ε; with
    integer costs and ε < 1/N the assignment is optimal.

    Choose ε relative to the cost scale: the bound is N·ε in cost units, the realised gap is
    usually far below it. In float32, ε should stay above ~1e-6 × max|cost| (bids smaller
    than the float spacing of the prices still progress, by one ulp, but slowly).

    Non-finite input: a batch element whose cost has a NaN or ±inf is not solved; it gets the
    identity assignment, ``converged = False`` and a NaN/inf cost, without running any bids.
    ``max_iterations`` bounds the loop in every case; elements still bidding then report
    ``converged = False`` and get a completed (valid, but not ε-optimal) permutation.

    Args:
      cost: [B, N, N] float cost matrices (row i, column j).
      epsilon: final ε > 0, in cost units.
      epsilon_scaling: θ ≥ 1; ε is divided by θ per phase (1: a single phase at ``epsilon``).
      max_iterations: bound on bidding rounds for the whole batch.
      initial_epsilon: ε of the first phase; default (max cost − min cost) / 4 per element.

    Returns:
      :class:`AuctionOutput` (assignment [B, N] int32, cost [B], converged [B], iterations).
      The assignment carries no gradient.

    Raises:
      ValueError: cost not [B, N, N] float, or non-positive ε / θ < 1 / max_iterations < 1.
    """
    cost = _validation.check_float_array("cost", cost, ("B", "N", "N"))
    if cost.shape[1] != cost.shape[2]:
        raise ValueError(f"cost must be square per example, shape [B, N, N], got shape "
                         f"{cost.shape}; the auction solves balanced assignments only.")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}.")
    if not epsilon_scaling >= 1:
        raise ValueError(f"epsilon_scaling must be >= 1, got {epsilon_scaling}.")
    if max_iterations < 1:
        raise ValueError(f"max_iterations must be >= 1, got {max_iterations}.")
    return _auction(jax.lax.stop_gradient(cost), epsilon, float(epsilon_scaling),
                    int(max_iterations), initial_epsilon)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _auction(cost: Array, epsilon: float, scaling: float, max_iterations: int,
             initial_epsilon: float | None) -> AuctionOutput:
    b, n, _ = cost.shape
    dtype = cost.dtype
    finite = jnp.all(jnp.isfinite(cost), axis=(1, 2))
    # Invalid elements get a zero benefit (so no NaN reaches the shared arithmetic) and are
    # marked done from the start.
    benefit = jnp.where(finite[:, None, None], -cost, 0.0)
    final_epsilon = jnp.asarray(epsilon, dtype)
    if initial_epsilon is None:
        spread = jnp.max(benefit, axis=(1, 2)) - jnp.min(benefit, axis=(1, 2))
        start = spread / 4.0
    else:
        start = jnp.full((b,), initial_epsilon, dtype)
    start = jnp.maximum(start, final_epsilon) if scaling > 1 else jnp.full((b,), epsilon, dtype)
    state = _State(prices=jnp.zeros((b, n), dtype), owner=jnp.full((b, n), n, jnp.int32),
                   epsilon=start.astype(dtype), done=~finite,
                   iteration=jnp.zeros((), jnp.int32))

    def cond(state):
        return jnp.any(~state.done) & (state.iteration < max_iterations)

    def body(state):
        prices, owner = _bid_round(benefit, state)
        owner, eps, done = _next_phase(benefit, prices, owner, state.epsilon, state.done,
                                       final_epsilon, scaling)
        return _State(prices, owner, eps, done, state.iteration + 1)

    state = jax.lax.while_loop(cond, body, state)
    converged = state.done & finite
    # Invalid elements: identity assignment.
    owner = jnp.where(finite[:, None], state.owner, jnp.arange(n, dtype=jnp.int32))
    assignment = _complete_permutation(_row_to_column(owner))
    total = jnp.sum(jnp.take_along_axis(cost, assignment[..., None], axis=-1)[..., 0], axis=-1)
    return AuctionOutput(assignment, total, converged, state.iteration)


def earth_movers_distance(p: Array, q: Array, *, epsilon: float = 1e-3,
                          epsilon_scaling: float = 5.0, max_iterations: int = 10_000,
                          squared: bool = False) -> Array:
    """Earth mover's distance between equal-size point clouds, one value per example (Eq. 9).

    EMD(P, Q) = min_φ (1/N) Σ_i ‖p_i − q_φ(i)‖ over bijections φ: P → Q, the mean Euclidean
    distance under the optimal matching. φ comes from :func:`auction_assignment` on the
    [B, N, N] Euclidean cost (so the mean is within ε of the exact EMD where the auction
    converged); φ is held fixed (``stop_gradient``) and gradients flow through the matched
    distances only, with a finite (zero) gradient for coincident points.

    Args:
      p: [B, N, 3] first cloud (e.g. the reconstruction), any length unit.
      q: [B, N, 3] second cloud; the same N is required (a bijection).
      epsilon: final auction ε in the unit of the points (the default suits clouds
        normalised by the reference bone length, costs ~0.1–5).
      epsilon_scaling: auction ε-scaling factor θ.
      max_iterations: bound on bidding rounds.
      squared: match and average squared distances instead (unit²).

    Returns:
      [B] EMD in the unit of the points (unit² if ``squared``); NaN where the input has NaN.

    Raises:
      ValueError: wrong ranks, last axis not 3, different batch sizes or point counts,
        non-float dtypes.
    """
    p = _validation.check_float_array("p", p, ("B", "N", 3))
    q = _validation.check_float_array("q", q, ("B", "N", 3))
    _validation.check_same_axis(("p", "q"), (p.shape, q.shape), 0, "batch size")
    if p.shape[1] != q.shape[1]:
        raise ValueError(f"p and q must have the same number of points N (the EMD matches "
                         f"them one to one), got p {p.shape} and q {q.shape}; resample one "
                         f"cloud or use chamfer_distance.")
    d2 = pairwise_squared_distances(jax.lax.stop_gradient(p), jax.lax.stop_gradient(q))
    cost = d2 if squared else safe_sqrt(d2)
    assignment = auction_assignment(cost, epsilon=epsilon, epsilon_scaling=epsilon_scaling,
                                    max_iterations=max_iterations).assignment
    matched = jnp.take_along_axis(q, assignment[..., None], axis=1)       # [B, N, 3]
    d2_matched = jnp.sum(jnp.square(p - matched), axis=-1)
    dist = d2_matched if squared else safe_sqrt(d2_matched)
    return jnp.mean(dist, axis=-1)
