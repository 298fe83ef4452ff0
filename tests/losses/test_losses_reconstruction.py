"""Pose squared error (Eq. 10) and heat-map sum of unsquared norms (Eq. 7)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from handvae import losses


def test_pose_l2_by_hand_and_batched():
    pred = np.zeros((2, 21, 3), np.float32)
    target = np.zeros((2, 21, 3), np.float32)
    target[0, 3] = [1.0, 2.0, 2.0]          # one joint off by a distance of 3 → 9
    target[1] = 0.5                         # every coordinate off by 0.5 → 63 · 0.25
    np.testing.assert_allclose(losses.pose_l2(pred, target), [9.0, 63 * 0.25])
    np.testing.assert_allclose(jax.jit(losses.pose_l2)(pred, target), [9.0, 63 * 0.25])


def test_heatmap_l2_is_a_sum_of_unsquared_norms_by_hand():
    """Eq. 7: L_heat = Σ_j ‖Ĥ_j − H_j‖ (Frobenius norm per keypoint, not squared)."""
    pred = np.zeros((2, 4, 4, 21), np.float32)
    target = np.zeros_like(pred)
    target[0, 1, 2, 5] = 2.0                 # one keypoint, one pixel off by 2 → 2 (not 4)
    target[1, :, :, 0] = 0.5                 # √(16 · 0.25) = 2
    target[1, 0, 0, 3], target[1, 3, 3, 3] = 3.0, 4.0   # √(9 + 16) = 5
    np.testing.assert_allclose(losses.heatmap_l2(pred, target), [2.0, 7.0], rtol=1e-6)
    np.testing.assert_allclose(jax.jit(losses.heatmap_l2)(pred, target), [2.0, 7.0], rtol=1e-6)


def test_heatmap_l2_gradient_is_finite_where_a_map_difference_is_zero():
    rng = np.random.default_rng(1)
    target = rng.uniform(size=(2, 4, 4, 3)).astype(np.float32)
    pred = target.copy()
    pred[0, :, :, 1] += 0.5                  # only keypoint 1 of example 0 differs
    grad = jax.grad(lambda p: jnp.sum(losses.heatmap_l2(p, target)))(pred)
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grad[1], 0.0)            # equal maps: zero gradient
    np.testing.assert_array_equal(grad[0, :, :, (0, 2)], 0.0)
    # d‖d‖/dd = d / ‖d‖: every pixel of the uniform difference gets 0.5 / 2 = 0.25.
    np.testing.assert_allclose(grad[0, :, :, 1], 0.25, rtol=1e-5)


def test_reconstruction_gradients():
    rng = np.random.default_rng(0)
    pose = rng.normal(size=(2, 21, 3))
    check_grads(losses.pose_l2, (pose, rng.normal(size=pose.shape)), order=1, rtol=1e-2)
    heat = rng.uniform(size=(1, 3, 3, 2))
    check_grads(losses.heatmap_l2, (heat, rng.uniform(size=heat.shape)), order=1, rtol=1e-2)


def test_reconstruction_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"pred must have shape \[B, J, 3\]"):
        losses.pose_l2(np.zeros((2, 21, 2)), np.zeros((2, 21, 2)))
    with pytest.raises(ValueError, match="pred and target must have the same shape"):
        losses.pose_l2(np.zeros((2, 21, 3)), np.zeros((2, 20, 3)))
    with pytest.raises(ValueError, match="target must be a floating-point array"):
        losses.heatmap_l2(np.zeros((1, 4, 4, 21)), np.zeros((1, 4, 4, 21), np.uint8))
    with pytest.raises(ValueError, match="pred must have rank 4"):
        losses.heatmap_l2(np.zeros((4, 4, 21)), np.zeros((4, 4, 21)))
