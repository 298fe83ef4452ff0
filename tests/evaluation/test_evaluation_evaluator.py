"""The one evaluator: padding for the device count, scores, kept examples, provenance."""

import numpy as np
import pytest

from handvae.data import spec
from handvae.evaluation import evaluator, metrics


def _batches(sizes, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        batch = spec.dummy_batch(n, 8, 4, 4, seed=int(rng.integers(1 << 30)))
        batch["visible"] = (rng.random((n, 21)) > 0.3).astype(np.float32)
        out.append(batch)
    return out


def test_pads_each_batch_for_the_devices_and_scores_like_the_metrics():
    batches = _batches([4, 3])  # the last batch does not divide by 2 devices
    offset = np.zeros((21, 3))
    offset[:, 0] = 0.5
    seen = []

    def predict(rgb):
        seen.append(rgb.shape[0])
        return np.zeros((rgb.shape[0], 21, 3)) + offset

    result = evaluator.evaluate(predict, batches, num_devices=2, num_kept=5)
    assert seen == [4, 4]  # 3 rows padded to 4, once
    errors = np.concatenate([metrics.keypoint_errors_mm(np.zeros_like(b["pose"]) + offset,
                                                        b["pose"], b["scale"])
                             for b in batches])
    visible = np.concatenate([b["visible"] for b in batches]).astype(bool)
    np.testing.assert_allclose(result.errors_mm, errors)
    expected = metrics.summarize_errors(errors, visible)
    assert result.summary["num_examples"] == 7
    assert result.summary["mean_epe_mm"] == pytest.approx(expected["mean_epe_mm"])
    # All 21 keypoints: a plain mean over every error of each joint, then over joints.
    assert result.summary["mean_epe_all_mm"] == pytest.approx(errors.mean(axis=0).mean())
    assert result.summary["all_keypoints"]["mean_epe_mm"] == result.summary["mean_epe_all_mm"]
    assert result.summary["mean_epe_all_mm"] != pytest.approx(result.summary["mean_epe_mm"])
    assert "constant_pose_baseline" in result.summary
    assert set(result.scalars()) >= {"mean_epe_mm", "mean_epe_all_mm", "num_examples"}
    # The first five examples for figures, with the predictions the scores came from.
    kept = result.examples
    assert kept["rgb"].shape[0] == kept["pred_pose"].shape[0] == kept["errors_mm"].shape[0] == 5
    np.testing.assert_allclose(kept["pose"][4], batches[1]["pose"][0])
    np.testing.assert_allclose(kept["errors_mm"], errors[:5].mean(axis=1))


def test_no_batches_names_the_split_fields():
    with pytest.raises(ValueError, match="validation_split"):
        evaluator.evaluate(lambda rgb: rgb, [], num_devices=1)


def test_selection_on_the_test_split_is_refused():
    import ml_collections
    data = ml_collections.ConfigDict({"validation_split": "validation", "eval_split": "test"})
    evaluator.check_selection_split(data)
    for bad in ("test", ""):
        data.validation_split = bad
        with pytest.raises(ValueError, match="config.data.validation_split"):
            evaluator.check_selection_split(data)


def test_provenance_names_the_checkpoint():
    origin = evaluator.provenance(dataset="rhd", split="test", num_examples=2728,
                                  which="best", checkpoint_step=5000,
                                  selection_split="validation")
    assert origin["checkpoint"] == "best-by-validation" and origin["checkpoint_step"] == 5000
    with pytest.raises(ValueError, match="which"):
        evaluator.provenance(dataset="rhd", split="test", num_examples=1, which="final",
                             checkpoint_step=None)
