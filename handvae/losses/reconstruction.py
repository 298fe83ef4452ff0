"""Reconstruction losses: squared error of 3-D poses (Eq. 10), norm of heat maps (Eq. 7).

Decision (moved from WORKSPACE.md)

**Eq. 7 is an unsquared norm** (issue 10). The paper (Sec. 4, Eq. 7): "L_heat =
Σ_j ‖Ĥ_j − H_j‖", the L2 norm of each keypoint's map difference, summed over keypoints;
`heatmap_l2` squared it before. Now as written, with `safe_sqrt`. At initialisation the
weighted heat-map term falls from about 0.2× (demo scale) / 2.6× (paper scale) of the pose
term to about 0.03× / 0.1× (measurements in the model report of issue 10/11): with
λ_heat = 0.01 (Sec. 4: "λ_heat to 0.01 for all cases") the term is now a small auxiliary
one, as the paper's weighting of an unsquared norm implies; λ_heat is kept at 0.01.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from handvae.losses import _validation
from handvae.losses.chamfer import safe_sqrt

Array = jax.Array


def _check_pair(pred: Array, target: Array, shape: tuple) -> tuple[Array, Array]:
    pred = _validation.check_float_array("pred", pred, shape)
    target = _validation.check_float_array("target", target, shape)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got pred {pred.shape} "
                         f"and target {target.shape}.")
    return pred, target


@jax.jit
def pose_l2(pred: Array, target: Array) -> Array:
    """Squared L2 error of 3-D poses, one value per example (Eq. 10).

    L = Σ_j Σ_c (pred[j, c] − target[j, c])²: the squared Euclidean norm of the flattened
    [J·3] pose difference, **summed** (not averaged) over joints and coordinates. Poses in
    the batch contract are root-relative and divided by the reference bone length, so the
    unit is (bone lengths)².

    Args:
      pred: [B, J, 3] predicted keypoints.
      target: [B, J, 3] ground-truth keypoints.

    Returns:
      [B] summed squared error.
    """
    pred, target = _check_pair(pred, target, ("B", "J", 3))
    return jnp.sum(jnp.square(pred - target), axis=(1, 2))


@jax.jit
def heatmap_l2(pred: Array, target: Array) -> Array:
    """Unsquared L2 error of 2-D keypoint heat maps, one value per example (Eq. 7).

    L_heat = Σ_j ‖Ĥ_j − H_j‖ with ‖·‖ the Euclidean (Frobenius) norm of keypoint j's [H, W]
    map difference: the norm is **not squared**, and it is **summed** over the J keypoints
    (weighted by λ_heat in the objective). Where a keypoint's maps agree exactly the norm is
    0 and its gradient is taken as 0 (``safe_sqrt``), not NaN.

    Args:
      pred: [B, H, W, J] predicted heat maps (values ~[0, 1]).
      target: [B, H, W, J] target heat maps.

    Returns:
      [B] sum over keypoints of the per-keypoint map-difference norms (heat-map units).
    """
    pred, target = _check_pair(pred, target, ("B", "H", "W", "J"))
    per_keypoint = safe_sqrt(jnp.sum(jnp.square(pred - target), axis=(1, 2)))  # [B, J]
    return jnp.sum(per_keypoint, axis=-1)
