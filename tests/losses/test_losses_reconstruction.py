"""Pose (Eq. 10) and heat-map (Eq. 7) squared errors."""

import jax
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


def test_heatmap_l2_by_hand():
    pred = np.zeros((2, 4, 4, 21), np.float32)
    target = np.zeros_like(pred)
    target[0, 1, 2, 5] = 1.0
    target[1, :, :, 0] = 0.5                 # 16 pixels · 0.25
    np.testing.assert_allclose(losses.heatmap_l2(pred, target), [1.0, 4.0])
    np.testing.assert_allclose(jax.jit(losses.heatmap_l2)(pred, target), [1.0, 4.0])


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
