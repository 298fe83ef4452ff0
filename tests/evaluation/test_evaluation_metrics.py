"""Metrics against values worked out by hand and against a per-keypoint loop of the protocol."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handvae.evaluation import metrics


def test_keypoint_errors_mm_by_hand():
    pred = np.zeros((2, 21, 3), np.float32)
    target = np.zeros((2, 21, 3), np.float32)
    target[0, 5] = [3.0, 4.0, 0.0]       # 5 scale units
    target[1, 0] = [0.0, 0.0, -2.0]      # 2 scale units
    scale = np.array([0.01, 0.03], np.float32)  # metres
    errors = metrics.keypoint_errors_mm(pred, target, scale)
    expected = np.zeros((2, 21))
    expected[0, 5] = 50.0   # 5 · 0.01 m = 50 mm
    expected[1, 0] = 60.0   # 2 · 0.03 m = 60 mm
    np.testing.assert_allclose(errors, expected, atol=1e-4)


def test_keypoint_errors_mm_jits_and_matches_numpy():
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(2, 3, 21, 3)).astype(np.float32)
    scale = rng.uniform(0.02, 0.04, 3).astype(np.float32)
    out = jax.jit(metrics.keypoint_errors_mm)(jnp.asarray(pred), jnp.asarray(target),
                                              jnp.asarray(scale))
    assert isinstance(out, jax.Array) and out.shape == (3, 21)
    np.testing.assert_allclose(out, metrics.keypoint_errors_mm(pred, target, scale),
                               rtol=1e-5)


@pytest.mark.parametrize("shapes, name", [
    (((2, 20, 3), (2, 20, 3), (2,)), "pred"),
    (((2, 21, 3), (2, 21, 2), (2,)), "target"),
    (((2, 21, 3), (2, 21, 3), (2, 1)), "scale"),
])
def test_keypoint_errors_mm_rejects_bad_shapes(shapes, name):
    args = [np.zeros(s) for s in shapes]
    with pytest.raises(ValueError, match=name):
        metrics.keypoint_errors_mm(*args)


def test_per_keypoint_protocol_by_hand():
    # Joint 0 sees errors 10 and 30 mm; joint 1 sees 40 mm once (its second instance is hidden
    # and its large error must not count). Per keypoint then averaged: mean (20 + 40) / 2 = 30;
    # a pooled mean would give 80 / 3.
    errors = np.array([[10.0, 40.0], [30.0, 999.0]])
    visible = np.array([[1, 1], [1, 0]])
    summary = metrics.summarize_errors(errors, visible)
    assert summary["mean_epe_mm"] == pytest.approx(30.0)
    assert summary["median_epe_mm"] == pytest.approx(30.0)
    assert summary["per_joint_mean_mm"] == pytest.approx([20.0, 40.0])
    assert summary["num_visible"] == [2, 1]
    # PCK at 0/25/50 mm: joint 0 → 0, ½, 1; joint 1 → 0, 0, 1; averaged 0, ¼, 1.
    curve = metrics.pck_curve(errors, visible, [0.0, 25.0, 50.0])
    np.testing.assert_allclose(curve, [0.0, 0.25, 1.0])
    # Trapezoid: (0 + ¼)/2·25 + (¼ + 1)/2·25 = 18.75, over the range 50 → 0.375.
    assert metrics.auc([0.0, 25.0, 50.0], curve) == pytest.approx(0.375)


def test_pck_counts_errors_equal_to_the_threshold():
    np.testing.assert_allclose(metrics.pck_curve(np.full((1, 1), 25.0), None, [24.9, 25.0]),
                               [0.0, 1.0])


def test_median_is_per_keypoint():
    errors = np.array([[1.0, 10.0], [2.0, 20.0], [9.0, 60.0]])
    summary = metrics.summarize_errors(errors)
    assert summary["per_joint_median_mm"] == pytest.approx([2.0, 20.0])
    assert summary["median_epe_mm"] == pytest.approx(11.0)
    assert summary["mean_epe_mm"] == pytest.approx((4.0 + 30.0) / 2)


def test_hand3d_threshold_grid_and_auc_by_hand():
    # Every error 30 mm. hand3d's grid is linspace(0, 50, 20), step h = 50/19: PCK is 0 up to
    # 28.95 mm (index 11) and 1 from 31.58 mm (index 12) on. Trapezoid: ½h + 7h = 7.5h.
    # AUC 0–50 = 7.5h / 19h = 0.39474; AUC 20–50 uses indices 8…19 (21.05–50 mm, range 11h)
    # = 7.5 / 11 = 0.68182. (A fresh 20, 25, …, 50 grid would give 0.75: not the protocol.)
    summary = metrics.summarize_errors(np.full((4, 21), 30.0))
    assert len(summary["pck_thresholds_mm"]) == 20
    assert summary["pck_thresholds_mm"][8] == pytest.approx(8 * 50 / 19)
    assert summary["pck"][11] == 0.0 and summary["pck"][12] == 1.0
    assert summary["auc_0_50"] == pytest.approx(7.5 / 19)
    assert summary["auc_20_50"] == pytest.approx(7.5 / 11)


def test_perfect_and_hopeless_predictions():
    perfect = metrics.summarize_errors(np.zeros((3, 21)))
    assert perfect["auc_0_50"] == pytest.approx(1.0)
    assert perfect["auc_20_50"] == pytest.approx(1.0)
    hopeless = metrics.summarize_errors(np.full((3, 21), 80.0))
    assert hopeless["auc_0_50"] == 0.0 and hopeless["auc_20_50"] == 0.0


def test_matches_a_per_keypoint_loop_on_random_data():
    rng = np.random.default_rng(3)
    errors = rng.gamma(2.0, 10.0, size=(37, 21))
    visible = rng.uniform(size=(37, 21)) > 0.3
    visible[:, 4] = False  # a keypoint never visible is skipped, not counted as zero
    summary = metrics.summarize_errors(errors, visible)
    thresholds = np.linspace(0, 50, 20)
    means, medians, aucs, curves = [], [], [], []
    for j in range(21):
        data = errors[visible[:, j], j]
        if data.size == 0:
            continue
        means.append(data.mean())
        medians.append(np.median(data))
        curve = np.array([np.mean(data <= t) for t in thresholds])
        curves.append(curve)
        aucs.append(np.trapezoid(curve, thresholds) / 50.0)
    assert summary["mean_epe_mm"] == pytest.approx(np.mean(means), rel=1e-12)
    assert summary["median_epe_mm"] == pytest.approx(np.mean(medians), rel=1e-12)
    assert summary["auc_0_50"] == pytest.approx(np.mean(aucs), rel=1e-12)
    np.testing.assert_allclose(summary["pck"], np.mean(curves, axis=0), rtol=1e-12)
    assert np.isnan(summary["per_joint_mean_mm"][4]) and summary["num_visible"][4] == 0


def test_rejects_bad_inputs():
    with pytest.raises(ValueError, match="visible"):
        metrics.summarize_errors(np.zeros((2, 21)), np.ones((2, 20)))
    with pytest.raises(ValueError, match="errors_mm"):
        metrics.summarize_errors(np.zeros((2, 21, 1)))
    with pytest.raises(ValueError, match="no keypoint"):
        metrics.summarize_errors(np.zeros((2, 21)), np.zeros((2, 21)))
    with pytest.raises(ValueError, match="thresholds"):
        metrics.auc([0.0], [1.0])
