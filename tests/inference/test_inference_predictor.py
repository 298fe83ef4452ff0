"""The Predictor on a 2-step trained work directory: shapes, batching, mirroring, bad input."""

import json
import logging
import shutil

import jax
import numpy as np
import pytest

from handvae.inference import Predictor
from handvae.models import vae
from handvae.training import checkpoint as checkpoint_lib

RNG = np.random.default_rng(0)
IMAGE = RNG.integers(0, 256, (90, 120, 3), dtype=np.uint8)


def test_outputs_have_the_documented_shapes(tiny_predictor):
    result = tiny_predictor(IMAGE, box=(30, 20, 80, 75), focal=150.0, hand_scale=0.03)
    assert result.pose_3d.shape == (21, 3) and result.keypoints_2d.shape == (21, 2)
    assert result.latent_mean.shape == (tiny_predictor.model.latent_dim,)
    assert result.keypoints_2d_source == "heatmaps" and result.cloud is None
    np.testing.assert_allclose(result.pose_3d_m, result.pose_3d * 0.03, rtol=1e-6)
    # heat-map keypoints lie in the crop square around the box
    (cu, cv), half = result.crop.center, result.crop.side / 2
    assert np.all(np.abs(result.keypoints_2d - [cu, cv]) <= half + 1)
    assert result.crop.K[0, 0] == 150.0


def test_batches_give_the_single_image_results(tiny_predictor):
    items = [{"image": RNG.integers(0, 256, (60 + 7 * i, 80, 3), dtype=np.uint8),
              "box": (5 + i, 5, 50, 45 + i), "hand_side": ("left", "right")[i % 2]}
             for i in range(5)]   # batch_size 4: one full and one padded batch
    batched = tiny_predictor.predict_many(items)
    for item, many in zip(items, batched):
        one = tiny_predictor(item["image"], box=item["box"], hand_side=item["hand_side"])
        for key in ("pose_3d", "keypoints_2d", "latent_mean"):
            np.testing.assert_allclose(getattr(many, key), getattr(one, key), atol=1e-5)


def test_one_bad_item_does_not_stop_the_others(tiny_predictor):
    results = tiny_predictor.predict_many([
        {"image": IMAGE, "box": (10, 10, 10, 40), "name": "zero.png"},
        {"image": IMAGE},
        {"image": "/nonexistent/hand.png"},
        {"image": IMAGE, "hand_side": "middle", "name": "side.png"}])
    assert isinstance(results[0], ValueError) and "zero.png" in str(results[0])
    assert results[1].pose_3d.shape == (21, 3)
    assert isinstance(results[2], ValueError) and "hand.png" in str(results[2])
    assert isinstance(results[3], ValueError) and "hand_side" in str(results[3])


def test_left_hand_of_a_mirrored_image_is_the_mirrored_right_hand(tiny_predictor):
    image = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    K = np.array([[80.0, 0, 31.5], [0, 80.0, 31.5], [0, 0, 1]])   # centred: no view rotation
    right = tiny_predictor(image, K=K)
    left = tiny_predictor(image[:, ::-1], K=K, hand_side="left")
    np.testing.assert_allclose(left.latent_mean, right.latent_mean, atol=1e-5)
    np.testing.assert_allclose(left.pose_3d * [-1, 1, 1], right.pose_3d, atol=1e-5)
    np.testing.assert_allclose(63 - left.keypoints_2d[:, 0], right.keypoints_2d[:, 0], atol=1e-3)
    np.testing.assert_allclose(left.keypoints_2d[:, 1], right.keypoints_2d[:, 1], atol=1e-3)


def test_projection_keypoints_and_cloud_strategies(tiny_predictor):
    projected = Predictor(tiny_predictor.model, tiny_predictor.variables, keypoints="projection")
    result = projected(IMAGE, box=(30, 20, 80, 75))
    assert result.keypoints_2d_source == "projection"
    (cu, cv), half = result.crop.center, result.crop.side / 2
    assert np.all(np.abs(result.keypoints_2d - [cu, cv]) <= half)
    with pytest.raises(ValueError, match="no heat-map decoder"):
        Predictor(vae.HandVAE(strategy="R2P", image_size=32), {}, keypoints="heatmaps")

    model = vae.HandVAE(strategy="R2CP", latent_dim=8, image_size=32, resnet_width=4,
                        num_points=16, pose_hidden=16, folding_hidden=16)
    variables = vae.init_variables(model, jax.random.key(0),
                                   {"rgb": np.zeros((1, 32, 32, 3), np.float32)})
    cloud = Predictor(model, variables)(IMAGE, hand_scale=0.02)
    assert cloud.cloud.shape == (16, 3) and cloud.keypoints_2d_source == "projection"
    np.testing.assert_allclose(cloud.cloud_m, cloud.cloud * 0.02, rtol=1e-6)


def test_workdir_without_checkpoint_or_config(tmp_path, tiny_workdir):
    with pytest.raises(FileNotFoundError, match="config.json"):
        Predictor.from_workdir(str(tmp_path))
    shutil.copy(f"{tiny_workdir}/config.json", tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match="checkpoint") as info:
        Predictor.from_workdir(str(tmp_path))
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("strategy", ["RC2CHP_poe", "R2P"])
def test_checkpoint_of_another_strategy_names_the_field(tmp_path, tiny_workdir, strategy):
    workdir = tmp_path / "other"
    shutil.copytree(tiny_workdir, workdir)
    config_path = workdir / checkpoint_lib.CONFIG_FILE
    config = json.loads(config_path.read_text())
    config["model"]["strategy"] = strategy
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="config.model.strategy") as info:
        Predictor.from_workdir(str(workdir))
    assert strategy in str(info.value) and "config.json" in str(info.value)


def test_a_bad_focal_k_or_hand_scale_fails_only_that_item(tiny_predictor):
    """Issue 24: a non-numeric ``focal`` raised a TypeError that stopped every image."""
    results = tiny_predictor.predict_many([
        {"image": IMAGE, "focal": "abc", "name": "focal.png"},
        {"image": IMAGE, "K": [["a", 0, 0], [0, 1, 0], [0, 0, 1]], "name": "k.png"},
        {"image": IMAGE, "hand_scale": "big", "name": "scale.png"},
        {"image": IMAGE, "box": (30, 20, 80, 75)}])
    for result, name, field in zip(results, ("focal.png", "k.png", "scale.png"),
                                   ("focal", "K", "hand_scale")):
        assert isinstance(result, ValueError), result
        assert name in str(result) and field in str(result), result
    assert results[3].pose_3d.shape == (21, 3)


def test_a_box_far_larger_than_the_image_warns(tiny_predictor):
    """Issue 24: a box 60× the image gave a prediction without a warning."""
    box = (0, 0, 60 * IMAGE.shape[1], 60 * IMAGE.shape[0])
    with pytest.warns(UserWarning, match="lies inside the 120x90 image"):
        result = tiny_predictor(IMAGE, box=box)
    assert len(result.warnings) == 1
    with pytest.raises(ValueError, match="too small"):
        tiny_predictor(IMAGE[:1, :1])


def test_restoring_logs_no_read_only_notice(tiny_workdir, caplog):
    """Issue 24: every predict and export printed orbax's ``Given directory is read only``."""
    with caplog.at_level(logging.INFO):
        Predictor.from_workdir(tiny_workdir, batch_size=1)
    assert not [r for r in caplog.records if "read only" in r.getMessage()], caplog.text
    assert not logging.getLogger("absl").filters   # the filter does not outlive the restore


def test_the_source_names_the_checkpoint_really_read(tiny_workdir, tiny_predictor):
    """Issue 24: after a fall back from "best", the outputs still said "(best)"."""
    assert tiny_predictor.source == f"{tiny_workdir} (latest, step 2)"   # no evaluation ran
