"""Chamfer distance between point clouds (Eq. 8 of Yang et al. 2019)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from handvae.losses import _validation

Array = jax.Array


def pairwise_squared_distances(p: Array, q: Array) -> Array:
    """Squared Euclidean distances between every pair of points.

    Uses explicit differences rather than ‖p‖² + ‖q‖² − 2 p·q: exact zeros for coincident
    points (no cancellation) and a well-conditioned gradient.

    Args:
      p: [B, N, 3] points.
      q: [B, M, 3] points (same unit).

    Returns:
      [B, N, M] squared distances, unit².
    """
    diff = p[:, :, None, :] - q[:, None, :, :]
    return jnp.sum(jnp.square(diff), axis=-1)


def safe_sqrt(x: Array) -> Array:
    """sqrt(x) for x ≥ 0 whose gradient is 0 (not inf/NaN) where x == 0."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def _directed(d2: Array, mask_from: Array | None, mask_to: Array | None, squared: bool
              ) -> Array:
    """Mean over valid 'from' points of the distance to the nearest valid 'to' point: [B]."""
    if mask_to is not None:
        d2 = jnp.where(mask_to[:, None, :], d2, jnp.inf)
    nearest = jnp.min(d2, axis=-1)  # [B, N_from]
    # A cloud without any valid 'to' point: no neighbour; count 0 instead of inf.
    nearest = jnp.where(jnp.isinf(nearest), 0.0, nearest)
    dist = nearest if squared else safe_sqrt(nearest)
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
    at distance r it is 2r. Memory is O(B·N·M) (the full distance tensor).

    The nearest-neighbour search runs on squared distances and the square root is taken of the
    minima only, with a gradient of 0 where a distance is exactly 0 (coincident points), so
    gradients are finite on duplicate points and identical clouds.

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
    d2 = pairwise_squared_distances(p, q)
    forward = _directed(d2, p_mask, q_mask, squared)
    backward = _directed(jnp.swapaxes(d2, 1, 2), q_mask, p_mask, squared)
    return forward + backward
