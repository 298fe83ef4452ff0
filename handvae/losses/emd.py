"""Earth mover's distance by Bertsekas' auction algorithm (Eq. 9 of Yang et al. 2019).

The assignment problem min_σ Σ_i cost[i, σ(i)] over permutations σ is solved by the forward
auction (Bertsekas 1988; Bertsekas & Castañon 1991) on the benefit a = −cost: unassigned rows
("persons") bid for their best column ("object") at the price that makes it only ε better than
their second-best; each column goes to its highest bidder and its price rises to that bid.
Bids are Jacobi-style, in one of two variants (``variant``, by default chosen by backend):
"pooled" (CPU): up to k unassigned rows, pooled over the whole batch, bid in the same step (k
adapts to the number of unassigned rows, so a round costs O(k·N), not O(B·N²)); "dense" (TPU
and other accelerators): every unassigned row bids in every round, O(B·N²) but free of the
data-dependent branches whose predicates XLA:GPU reads on the host, and
``rounds_per_iteration`` rounds run per loop iteration (one host sync per R rounds). Conflicts
on a column are resolved by the highest bid, ties by the lowest row index. Results are
deterministic (pooled: the bidders are the top of a stack of unassigned rows); the two
variants reach different, equally guaranteed, assignments.

A third variant, "pallas" (the default on a GPU), runs a Gauss–Seidel auction (one bid per
round) as one Pallas kernel per batch element (:mod:`handvae.losses._auction_pallas`;
interpreted on CPU): 32×256 hand-like clouds in 4.1 ms on an H200, 19× "dense" there.

ε-complementary slackness holds for every assigned pair throughout, so on termination the
assignment's cost is within N·ε (cost units) of the optimum (and optimal for integer costs
when ε < 1/N). ε is given relative to each element's cost scale s_b (mean nearest-neighbour
distance, a lower bound on optimum / N), so N·ε·s_b ≤ ε·optimum: accuracy is unit-free.
The solve starts from column reduction (prices = column minima, columns to their nearest
rows). ε-scaling runs phases with ε = ε₀, ε₀/θ, ..., ε (θ = ``epsilon_scaling``); prices
carry over between phases and pairs that still satisfy ε-CS for the new ε stay assigned, so
later phases only repair a few rows. All phases of all batch elements run in one
``lax.while_loop`` bounded by ``max_iterations`` (by default growing with B·N); each batch
element has its own ε schedule and stops on its own, and reports whether it converged.

Decision (moved from WORKSPACE.md)

**EMD ε relative to the clouds' scale (issue 13).** The paper defines the EMD as the exact
minimum over bijections (Sec. 3.3, Eq. 9: "one-to-one bijective correspondences are
established between two point clouds") and is silent on the solver and its accuracy. An
absolute ε made the accuracy depend on the unit (hand clouds in metres: gap 2.6e-2; in bone
lengths: 8e-6), so ε is now relative to each element's mean nearest-neighbour distance,
which bounds the gap by a factor (1 + ε) of the optimum in any unit; the round bound grows
with B·N and non-convergence is returned (`return_converged=True`), not hidden.
Config defaults: `loss.emd_epsilon = 5e-3` (relative) and `loss.emd_max_iterations = 0`
(0: the N-dependent bound); the objective logs `emd_unconverged_fraction` (share of the
batch's EMD solves cut off by the bound) as a training metric.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import custom_batching

from handvae.losses import _auction, _auction_pallas, _validation
from handvae.losses.chamfer import pairwise_squared_distances, safe_sqrt

Array = jax.Array


class AuctionOutput(NamedTuple):
    """Result of :func:`auction_assignment`.

    Attributes:
      assignment: [B, N] int32; ``assignment[b, i]`` is the column given to row i. Always a
        permutation of 0..N−1, also when not converged (unassigned rows then get the free
        columns in increasing order).
      cost: [B] total cost Σ_i cost[b, i, assignment[b, i]]; NaN where the element's cost
        matrix has a NaN or ±inf.
      converged: [B] bool; True where the final-ε phase completed (the N·ε guarantee holds).
      iterations: int32 scalar, bidding rounds run for the whole batch.
    """
    assignment: Array
    cost: Array
    converged: Array
    iterations: Array


VARIANTS = ("pooled", "dense", "pallas")

# Defaults, measured on hand-like clouds (benchmarks/losses.py; WORKSPACE.md, "Decisions").
EPSILON = 5e-3            # final ε relative to the element's cost scale (_auction.cost_scale)
EPSILON_SCALING = 5.0     # θ: ε divided by θ per phase
INITIAL_EPSILON = 1.0     # first-phase ε relative to the cost scale


def default_max_iterations(batch: int, points: int) -> int:
    """Default bound on bidding rounds for a [batch, points, points] problem.

    Grows with N (and with B·N for the pooled variant, whose rounds serve the whole batch):
    well above what the default ε needs on hand-like and uniform clouds (measured ~5–20× more
    rounds allowed than used), so hitting it signals a pathological input, not a slow one.
    """
    return 10_000 + 64 * points + 4 * batch * points


def _check_variant(variant: str | None, rounds_per_iteration: int) -> str:
    if variant is None:
        variant = _auction.default_variant()
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS} or None, got {variant!r}.")
    if rounds_per_iteration < 1:
        raise ValueError(f"rounds_per_iteration must be >= 1, got {rounds_per_iteration}.")
    return variant


@functools.lru_cache(maxsize=None)
def _member_batched_solve(scaling: float, max_iterations: int, variant: str,
                          rounds_per_iteration: int, warm: bool):
    """The auction's solve ``(cost [B, N, N], final ε [B], start ε [B]) -> (assignment
    [B, N], converged [B], iterations)`` with a ``jax.vmap`` rule of its own.

    Under ``vmap`` (a population's member axis, ``handvae.training.population``) the solve's
    loops and branches read per-element values; vmap's default rule would turn each
    ``lax.switch``/``cond`` into running every branch and each ``while_loop`` into one that
    runs until the slowest member is done (measured 4× one member's time at K = 4). The rule
    here solves the batched problem [K, B, N, N] instead:

    * "dense", "pallas": folded into one [K·B, N, N] solve. Each element's rounds depend on
      its own costs only (every unassigned row bids; one kernel per element), so every
      member's assignment equals its unbatched one. ``iterations`` is then the folded
      solve's count, the same for every member.
    * "pooled": one member after another (``lax.map``). Pooled rounds draw bidders from the
      whole batch, so a folded solve reaches other (equally ε-optimal) assignments; run one
      at a time, each member's solve is exactly its unbatched one, at the same cost as K
      separate runs (measured as fast as folding, K = 4, 96 × 64 points, 2 cores).
    """
    def unbatched(cost, final, start):
        if variant == "pallas":
            return _auction_pallas.solve(cost, final, start, scaling, max_iterations, warm)
        return _auction.solve(cost, final, start, scaling, max_iterations, variant,
                              rounds_per_iteration, warm)

    @custom_batching.custom_vmap
    def solve(cost, final, start):
        return unbatched(cost, final, start)

    @solve.def_vmap
    def _rule(axis_size, in_batched, cost, final, start):
        cost, final, start = (x if batched else jnp.broadcast_to(x, (axis_size,) + x.shape)
                              for x, batched in zip((cost, final, start), in_batched))
        if variant == "pooled":
            out = jax.lax.map(lambda args: solve(*args), (cost, final, start))
        else:
            k, b, n = cost.shape[:3]
            assignment, converged, iterations = solve(
                cost.reshape((k * b,) + cost.shape[2:]), final.reshape(k * b),
                start.reshape(k * b))
            out = (assignment.reshape(k, b, n), converged.reshape(k, b),
                   jnp.broadcast_to(iterations, (k,)))
        return out, (True, True, True)

    return solve


@functools.partial(jax.jit, static_argnames=("epsilon", "epsilon_scaling", "max_iterations",
                                             "initial_epsilon", "variant",
                                             "rounds_per_iteration", "relative", "warm_start"))
def auction_assignment(cost: Array, *, epsilon: float = EPSILON,
                       epsilon_scaling: float = EPSILON_SCALING,
                       max_iterations: int | None = None, initial_epsilon: float | None = None,
                       variant: str | None = None, rounds_per_iteration: int = 8,
                       relative: bool = True, warm_start: bool = True) -> AuctionOutput:
    """Minimum-cost assignment of rows to columns by the ε-scaled auction algorithm.

    ε is relative (``relative=True``, the default): the final ε in cost units is
    ``epsilon · s_b`` per element, with the cost scale s_b = max(mean_i min_j cost, mean_j
    min_i cost, 1e-3 · cost range) (:func:`handvae.losses._auction.cost_scale`). Scaling the
    costs by any c > 0 then gives the same assignment, so accuracy does not depend on units.

    Guarantee: where ``converged[b]``, Σ_i cost[b, i, assignment[b, i]] ≤ optimum + N·ε·s_b;
    for non-negative costs N·s_b ≤ optimum (the mean row / column minimum is a lower bound of
    optimum / N) unless the 1e-3 floor applies, so the cost is within a factor (1 + ε) of the
    optimum; the realised gap is usually far below (hand-like clouds, default ε: ~1e-5).
    With ``relative=False`` ε is in cost units: within N·ε, and with integer costs and
    ε < 1/N the assignment is optimal.

    Non-finite input: a batch element whose cost has a NaN or ±inf is not solved; it gets the
    identity assignment, ``converged = False`` and a NaN cost, without running any bids.
    ``max_iterations`` bounds the loop in every case; elements still bidding then report
    ``converged = False`` and get a completed (valid, but not ε-optimal) permutation.

    Args:
      cost: [B, N, N] float cost matrices (row i, column j).
      epsilon: final ε > 0, relative to the cost scale s_b (or in cost units, see
        ``relative``).
      epsilon_scaling: θ ≥ 1; ε is divided by θ per phase (1: a single phase at ``epsilon``).
      max_iterations: bound on bidding rounds for the whole batch; None:
        :func:`default_max_iterations` (grows with B and N).
      initial_epsilon: ε of the first phase, in the unit of ``epsilon``; None: the larger
        of s_b and (max − min cost) / 16 per element.
      variant: "pooled" (few bidders per round, one round per loop iteration: for CPU),
        "dense" (all unassigned rows bid every round, R rounds per loop iteration: for
        GPU/TPU, where each loop iteration costs a device→host sync) or "pallas" (one
        bidder per round, a Pallas kernel per batch element, all rounds in one launch; the
        bound and ``iterations`` count each element's bids; runs in the Pallas
        interpreter on CPU); None: by ``jax.default_backend()``, "pooled" on CPU, "pallas"
        on a GPU, "dense" elsewhere (``_auction.default_variant``).
      rounds_per_iteration: R, rounds unrolled per loop iteration ("dense" only). Rounds past
        the end (all elements done, or ``max_iterations`` reached) are exact no-ops and are
        not counted in ``iterations``.
      relative: ε (and ``initial_epsilon``) relative to s_b (True) or in cost units (False).
      warm_start: start from column reduction (prices = column minima, each column to its
        nearest row; :func:`handvae.losses._auction.warm_start`) instead of zero prices.

    Returns:
      :class:`AuctionOutput` (assignment [B, N] int32, cost [B], converged [B], iterations).
      The assignment carries no gradient.

    Raises:
      ValueError: cost not [B, N, N] float, non-positive ε / θ < 1 / max_iterations < 1, an
        unknown variant or rounds_per_iteration < 1.
    """
    cost = _validation.check_float_array("cost", cost, ("B", "N", "N"))
    if cost.shape[1] != cost.shape[2]:
        raise ValueError(f"cost must be square per example, shape [B, N, N], got shape "
                         f"{cost.shape}; the auction solves balanced assignments only.")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}.")
    if not epsilon_scaling >= 1:
        raise ValueError(f"epsilon_scaling must be >= 1, got {epsilon_scaling}.")
    if max_iterations is None:
        max_iterations = default_max_iterations(cost.shape[0], cost.shape[1])
    if max_iterations < 1:
        raise ValueError(f"max_iterations must be >= 1, got {max_iterations}.")
    variant = _check_variant(variant, rounds_per_iteration)
    fixed = jax.lax.stop_gradient(cost)
    finite = _auction.all_finite(fixed)
    # NaN/inf elements are not solved; their scale (NaN or inf) is replaced, and computing it
    # from the unmasked cost saves a [B, N, N] pass (XLA shares its max/min with ``spread``).
    scale = jnp.where(finite, _auction.cost_scale(fixed), 1.0)
    unit = scale if relative else jnp.ones_like(scale)
    final = epsilon * unit
    if epsilon_scaling == 1.0:    # a single phase at the final ε
        start = final
    elif initial_epsilon is None:   # the cost scale, or a 16th of the cost range if larger
        spread = jnp.max(fixed, axis=(1, 2)) - jnp.min(fixed, axis=(1, 2))
        start = jnp.maximum(INITIAL_EPSILON * scale, spread / 16.0)
    else:
        start = float(initial_epsilon) * unit
    solve = _member_batched_solve(float(epsilon_scaling), int(max_iterations), variant,
                                  int(rounds_per_iteration) if variant == "dense" else 1,
                                  bool(warm_start))
    assignment, converged, iterations = solve(fixed, final, start)
    total = jnp.sum(jnp.take_along_axis(cost, assignment[..., None], axis=-1)[..., 0], axis=-1)
    total = jnp.where(jnp.all(jnp.isfinite(cost), axis=(1, 2)), total, jnp.nan)
    return AuctionOutput(assignment, jax.lax.stop_gradient(total), converged, iterations)


@functools.partial(jax.jit, static_argnames=("epsilon", "epsilon_scaling", "max_iterations",
                                             "squared", "variant", "rounds_per_iteration",
                                             "return_converged"))
def earth_movers_distance(p: Array, q: Array, *, epsilon: float = EPSILON,
                          epsilon_scaling: float = EPSILON_SCALING,
                          max_iterations: int | None = None, squared: bool = False,
                          variant: str | None = None, rounds_per_iteration: int = 8,
                          return_converged: bool = False) -> Array | tuple[Array, Array]:
    """Earth mover's distance between equal-size point clouds, one value per example (Eq. 9).

    EMD(P, Q) = min_φ (1/N) Σ_i ‖p_i − q_φ(i)‖ over bijections φ: P → Q, the mean Euclidean
    distance under the optimal matching. φ comes from :func:`auction_assignment` on the
    [B, N, N] Euclidean cost with ε relative to the clouds' own scale, so where the auction
    converged the value is within a factor (1 + ε) of the exact EMD in any length unit
    (metres, millimetres, bone lengths alike; the realised gap is usually ~100× smaller). φ is
    held fixed (``stop_gradient``) and gradients flow through the matched distances only,
    with a finite (zero) gradient for coincident points.

    Args:
      p: [B, N, 3] first cloud (e.g. the reconstruction), any length unit.
      q: [B, N, 3] second cloud; the same N is required (a bijection).
      epsilon: final auction ε, relative to the element's cost scale (mean nearest-neighbour
        distance; see :func:`auction_assignment`); unit-free.
      epsilon_scaling: auction ε-scaling factor θ.
      max_iterations: bound on bidding rounds; None: grows with B and N
        (:func:`default_max_iterations`).
      squared: match and average squared distances instead (unit²).
      variant: auction variant, "pooled" | "dense" | "pallas" | None (by backend); see
        :func:`auction_assignment`.
      rounds_per_iteration: auction rounds per loop iteration ("dense" only).
      return_converged: also return the auction's per-example convergence flag.

    Returns:
      [B] EMD in the unit of the points (unit² if ``squared``); NaN where the input has NaN.
      With ``return_converged``: ``(distance [B], converged [B] bool)``; ``converged`` is
      False where the round bound cut the auction off (the distance then comes from a valid
      but not ε-optimal matching) or the input has NaN/inf.

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
    # Explicit differences, no gradient (the matching is held fixed): exact to float32
    # rounding (the matmul form ‖p‖² + ‖q‖² − 2p·q cancels; measured 2.5× slower for
    # 32 × 256 points on 2 CPU cores).
    d2 = pairwise_squared_distances(jax.lax.stop_gradient(p), jax.lax.stop_gradient(q))
    cost = d2 if squared else jnp.sqrt(d2)
    out = auction_assignment(cost, epsilon=epsilon, epsilon_scaling=epsilon_scaling,
                             max_iterations=max_iterations, variant=variant,
                             rounds_per_iteration=rounds_per_iteration)
    matched = jnp.take_along_axis(q, out.assignment[..., None], axis=1)   # [B, N, 3]
    d2_matched = jnp.sum(jnp.square(p - matched), axis=-1)
    dist = d2_matched if squared else safe_sqrt(d2_matched)
    distance = jnp.mean(dist, axis=-1)
    return (distance, out.converged) if return_converged else distance
