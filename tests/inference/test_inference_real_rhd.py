"""The predictor on three real RHD frames (../shared/real_samples/rhd; skipped in a user's
clone): shapes, keypoints in the box, and hand3d metrics with the true K, root and scale."""

import json
import math
import pathlib

import numpy as np
import pytest

from handvae.evaluation import metrics
from handvae.ops import skeleton

REPO = pathlib.Path(__file__).resolve().parents[2]
CANDIDATES = (REPO.parent / "shared", pathlib.Path("/work/shared"))
SAMPLES = next((p / "real_samples" / "rhd" for p in CANDIDATES
                if (p / "real_samples" / "rhd" / "test_rhd.json").exists()), None)
pytestmark = pytest.mark.skipif(SAMPLES is None, reason="../shared/real_samples/rhd is absent")


def _frames():
    """(path, box x0,y0,x1,y1, K, side, keypoints [21, 3] metres) of each annotated frame."""
    data = json.loads((SAMPLES / "test_rhd.json").read_text())
    images = {image["id"]: image for image in data["images"]}
    for annotation in data["annotations"]:
        image = images[annotation["image_id"]]
        (fx, fy), (cx, cy) = image["cam_param"]["focal"], image["cam_param"]["princpt"]
        x, y, w, h = annotation["bbox"]   # COCO: x, y, width, height
        yield (SAMPLES / image["file_name"], (x, y, x + w, y + h),
               np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]]), annotation["hand_type"],
               np.asarray(annotation["joint_cam"], np.float64) / 1000.0)


def test_real_rhd_frames_predict_and_score(tiny_predictor):
    frames = list(_frames())
    assert len(frames) == 3
    results = tiny_predictor.predict_many([
        {"image": str(path), "box": box, "K": K, "hand_side": side} for path, box, K, side, _
        in frames])
    predicted, targets, scales = [], [], []
    for (path, box, K, side, joints), result in zip(frames, results):
        assert not isinstance(result, Exception), result
        assert result.pose_3d.shape == (21, 3) and result.keypoints_2d.shape == (21, 2)
        assert result.crop.hand_side == side
        # Heat-map keypoints lie in the crop square around the box (margin 1.3; the
        # view-corrected square is a slightly skewed quadrilateral in the image).
        (cu, cv), half = result.crop.center, result.crop.side / 2
        assert np.all(np.abs(result.keypoints_2d - [cu, cv]) <= 1.1 * half), path
        normalized, _, scale = skeleton.normalize_pose(joints)
        predicted.append(result.pose_3d)
        targets.append(normalized)
        scales.append(scale)
    errors = metrics.keypoint_errors_mm(np.stack(predicted), np.stack(targets),
                                        np.asarray(scales))
    summary = metrics.summarize_errors(errors, np.ones((3, 21)))
    assert math.isfinite(summary["mean_epe_mm"]) and summary["mean_epe_mm"] > 0
