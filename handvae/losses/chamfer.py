"""Chamfer distance between point clouds (Eq. 8 of Yang et al. 2019)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from handvae.losses import _validation

Array = jax.Array


def pairwise_squared_distances(p: Array, q: Array) -> Array:
    """Squared Euclidean distances between every pair of points, by explicit differences.

    Exact zeros for coincident points (no cancellation) and a well-conditioned gradient. The
    coordinates are summed one by one: each term is a fused [B, N, M] pass, ~14× faster on
    XLA:CPU than squaring a [B, N, M, 3] difference (32 × 256 points, 2 cores). The EMD's
    costs come from here; :func:`chamfer_distance` searches with the matmul form
    (:func:`squared_distances_for_search`) and recomputes the distances it keeps.

    Args:
      p: [B, N, D] points (D = 3 for clouds).
      q: [B, M, D] points (same unit).

    Returns:
      [B, N, M] squared distances, unit².
    """
    return sum(jnp.square(p[:, :, None, i] - q[:, None, :, i]) for i in range(p.shape[-1]))


def squared_distances_for_search(p: Array, q: Array) -> Array:
    """[B, N, M] squared distances via ‖p‖² + ‖q‖² − 2 p·q (a batched matmul), no gradient.

    Cancellation makes entries inaccurate by ~1e-7 × ‖p‖² (float32), which only matters for
    choosing between near-equal neighbours; callers recompute the distances they keep from
    explicit differences.
    """
    p, q = jax.lax.stop_gradient(p), jax.lax.stop_gradient(q)
    cross = jnp.einsum("bnd,bmd->bnm", p, q, precision=jax.lax.Precision.HIGHEST)
    d2 = (jnp.sum(jnp.square(p), -1)[:, :, None] + jnp.sum(jnp.square(q), -1)[:, None, :]
          - 2.0 * cross)
    return jnp.maximum(d2, 0.0)


def safe_sqrt(x: Array) -> Array:
    """sqrt(x) for x ≥ 0 whose gradient is 0 (not inf/NaN) where x == 0."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def _first_argmin(d2: Array) -> Array:
    """Index of the smallest entry along the last axis (lowest index on ties); no argmin,
    which is a slow variadic reduction on XLA:CPU."""
    m = d2.shape[-1]
    smallest = jnp.min(d2, axis=-1, keepdims=True)
    index = jnp.min(jnp.where(d2 == smallest, jnp.arange(m, dtype=jnp.int32), m), axis=-1)
    return jnp.minimum(index, m - 1)


def _directed(source: Array, target: Array, d2: Array, mask_from: Array | None,
              mask_to: Array | None, squared: bool) -> Array:
    """Mean over valid source points of the distance to the nearest valid target point: [B].

    The neighbour is searched on ``d2`` (no gradient); the distance to it is recomputed from
    the points, so the gradient is that of ‖x − nn(x)‖ (the subgradient of the min).
    """
    if mask_to is not None:
        d2 = jnp.where(mask_to[:, None, :], d2, jnp.inf)
    nearest = jnp.take_along_axis(target, _first_argmin(d2)[..., None], axis=1)  # [B, N, 3]
    dist2 = jnp.sum(jnp.square(source - nearest), axis=-1)
    dist = dist2 if squared else safe_sqrt(dist2)
    if mask_to is not None:  # no valid target point at all: no neighbour, count 0
        dist = jnp.where(jnp.any(mask_to, axis=-1, keepdims=True), dist, 0.0)
    if mask_from is None:
        return jnp.mean(dist, axis=-1)
    weights = mask_from.astype(dist.dtype)
    count = jnp.maximum(jnp.sum(weights, axis=-1), 1.0)
    return jnp.sum(dist * weights, axis=-1) / count


@functools.partial(jax.jit, static_argnames="squared")
def chamfer_distance(p: Array, q: Array, *, squared: bool = False,
                     p_mask: Array | None = None, q_mask: Array | None = None) -> Array:
    """Symmetric Chamfer distance, one value per example (Eq. 8).

    CD(P, Q) = mean_{x∈P} min_{y∈Q} d(x, y) + mean_{y∈Q} min_{x∈P} d(x, y),

    with d the Euclidean distance (``squared=False``, the paper's choice) or its square.
    The sum of the two directed means: for identical clouds it is 0, for two single points
    at distance r it is 2r. Memory is O(B·N·M) (the [B, N, M] distance table).

    The nearest neighbours are searched on a [B, N, M] matmul-form distance table without
    gradient; the kept distances are recomputed from point differences, so the backward pass
    is O(B·(N + M)) and the gradient of the square root is 0 where a distance is exactly 0
    (coincident points): gradients are finite on duplicate points and identical clouds.

    Args:
      p: [B, N, 3] first cloud (e.g. the reconstruction), any length unit.
      q: [B, M, 3] second cloud (e.g. the target); M may differ from N.
      squared: use squared distances (unit²) instead of distances (unit).
      p_mask: optional [B, N] bool/0-1 flags; False marks padding in ``p``: such points are
        neither averaged over nor used as neighbours.
      q_mask: optional [B, M] flags for ``q``, likewise.
        A cloud with no valid point contributes 0 to both directions.

    Returns:
      [B] Chamfer distance, in the unit of the points (unit² if ``squared``).

    Raises:
      ValueError: wrong ranks, last axis not 3, different batch sizes, non-float dtypes or
        masks of the wrong shape.
    """
    p = _validation.check_float_array("p", p, ("B", "N", 3))
    q = _validation.check_float_array("q", q, ("B", "M", 3))
    _validation.check_same_axis(("p", "q"), (p.shape, q.shape), 0, "batch size")
    p_mask = _validation.check_mask("p_mask", p_mask, p.shape[:2])
    q_mask = _validation.check_mask("q_mask", q_mask, q.shape[:2])
    d2 = squared_distances_for_search(p, q)
    forward = _directed(p, q, d2, p_mask, q_mask, squared)
    backward = _directed(q, p, jnp.swapaxes(d2, 1, 2), q_mask, p_mask, squared)
    return forward + backward
