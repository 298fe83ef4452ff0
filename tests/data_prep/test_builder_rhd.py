"""The RHD builder on data_prep/rhd/dummy_data.

``tfds.testing.DatasetBuilderTestCase`` imports TensorFlow, which this project does not
install, so these tests do its job by hand: build from dummy_data (the session fixture
``rhd_synthetic_data_dir``), check split sizes, features and keys, and more (geometry against
the raw files, bad input).
"""

import os
import pathlib
import pickle
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_prep import build, safe_pickle
from data_prep import features as feature_lib
from data_prep.rhd import rhd_dataset_builder as rhd
from handvae.ops import camera

DUMMY = pathlib.Path(__file__).resolve().parents[2] / "data_prep" / "rhd" / "dummy_data"
RAW = DUMMY / rhd.DATA_FOLDER


def _annotations(folder):
    with open(RAW / folder / f"anno_{folder}.pickle", "rb") as f:
        return safe_pickle.load(f)


def _source(data_dir, split):
    version_dir = os.path.join(data_dir, "rhd", "synthetic", str(rhd.Builder.VERSION))
    return tfds.builder_from_directory(version_dir).as_data_source(split=split)


def _raw(folder, frame):
    name = f"{frame:05d}.png"
    image = feature_lib.read_png(pathlib.Path(RAW / folder / "color" / name))
    depth = rhd.decode_depth(feature_lib.read_png(pathlib.Path(RAW / folder / "depth" / name)))
    mask = feature_lib.read_png(pathlib.Path(RAW / folder / "mask" / name))
    return image, depth, mask if mask.ndim == 2 else mask[..., 0]


def test_splits_features_and_keys(rhd_synthetic_data_dir):
    info = tfds.builder_from_directory(
        os.path.join(rhd_synthetic_data_dir, "rhd", "synthetic", "1.0.0")).info
    expected = {"train": "training", "test": "evaluation"}
    for split, folder in expected.items():
        annotations = _annotations(folder)
        assert info.splits[split].num_examples == len(annotations)
        source = _source(rhd_synthetic_data_dir, split)
        frames = [source[i]["frame"].decode() for i in range(len(source))]
        assert frames == [f"{folder}/{int(k):05d}" for k in sorted(annotations, key=int)]
    example = _source(rhd_synthetic_data_dir, "train")[0]
    shapes = {"image": (256, 256, 3), "keypoints_3d": (21, 3), "keypoints_2d": (21, 2),
              "visible": (21,), "root": (3,), "K_crop": (3, 3), "view_rotation": (3, 3)}
    for key, shape in shapes.items():
        assert example[key].shape == shape, key
    assert example["image"].dtype == np.uint8
    assert example["points"].ndim == 2 and example["points"].shape[1] == 3
    assert 32 <= example["num_points"] == len(example["points"]) <= feature_lib.MAX_POINTS
    assert example["side"] in (0, 1)


def test_instructions_are_numbered_and_name_the_folder():
    for step in ("1.", "2.", "3.", "4."):
        assert step in rhd.MANUAL_DOWNLOAD_INSTRUCTIONS
    assert "RHD_published_v2" in rhd.MANUAL_DOWNLOAD_INSTRUCTIONS


def test_stored_geometry_matches_the_raw_frame(rhd_synthetic_data_dir):
    """Undoing normalisation, mirroring and view correction gives back the raw annotation;
    the surface points lie on the raw depth map inside the dominant hand's mask."""
    annotations = _annotations("training")
    source = _source(rhd_synthetic_data_dir, "train")
    for i in range(len(source)):
        example = source[i]
        frame = int(example["frame"].decode().split("/")[1])
        anno = annotations[frame]
        image, depth, mask = _raw("training", frame)
        side, hand_mask = rhd.dominant_hand(mask)
        assert side == example["side"]
        unmirror = np.array([-1.0, 1, 1]) if side == rhd.LEFT else np.ones(3)
        rotation = example["view_rotation"].astype(np.float64)
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-6)

        metric = example["keypoints_3d"] * example["scale"] + example["root"]
        np.testing.assert_allclose(camera.project(metric, example["K_crop"]),
                                   example["keypoints_2d"], atol=2e-3)
        original = (metric * unmirror) @ rotation
        joints = slice(0, 21) if side == rhd.LEFT else slice(21, 42)
        np.testing.assert_allclose(original, anno["xyz"][joints], atol=2e-5)

        points = ((example["points"] * example["scale"] + example["root"]) * unmirror) @ rotation
        uv = camera.project(points, anno["K"])
        pixel = np.round(uv).astype(int)
        np.testing.assert_allclose(uv, pixel, atol=0.02)   # back-projected pixel centres
        np.testing.assert_allclose(points[:, 2], depth[pixel[:, 1], pixel[:, 0]], rtol=1e-4)
        assert hand_mask[pixel[:, 1], pixel[:, 0]].all()


def test_wrong_manual_dir_names_the_expected_file(tmp_path):
    (tmp_path / "something_else").mkdir()
    with pytest.raises(FileNotFoundError, match=r"anno_training\.pickle(.|\n)*1\. Open"):
        build.build("rhd", "synthetic", tmp_path, tmp_path / "tfds")


def test_bad_frames_are_skipped_and_named(tmp_path, caplog):
    raw = tmp_path / "raw"
    shutil.copytree(DUMMY, raw)
    training = raw / rhd.DATA_FOLDER / "training"
    evaluation = raw / rhd.DATA_FOLDER / "evaluation"
    train_frames = sorted(_annotations("training"), key=int)
    test_frames = sorted(_annotations("evaluation"), key=int)
    # a truncated colour PNG
    corrupt = training / "color" / f"{int(train_frames[0]):05d}.png"
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    # an empty hand mask
    mask_file = training / "mask" / f"{int(train_frames[1]):05d}.png"
    from PIL import Image
    Image.fromarray(np.zeros((320, 320), np.uint8)).save(mask_file)
    # keypoints far outside the image
    annotations = _annotations("evaluation")
    annotations[test_frames[0]]["xyz"] = annotations[test_frames[0]]["xyz"] + [5.0, 0, 0]
    with open(evaluation / "anno_evaluation.pickle", "wb") as f:
        pickle.dump(annotations, f)

    with caplog.at_level("WARNING"):
        builder = build.build("rhd", "synthetic", raw, tmp_path / "tfds")
    assert builder.info.splits["train"].num_examples == len(train_frames) - 2
    assert builder.info.splits["test"].num_examples == len(test_frames) - 1
    log = caplog.text
    assert corrupt.name in log and "corrupt or truncated PNG" in log
    assert "empty hand mask" in log
    assert "outside" in log
    assert f"{len(train_frames)} frames, 2 skipped" in log


def test_malicious_annotation_pickle_stops_the_build(tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(DUMMY, raw)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(raw / rhd.DATA_FOLDER / "training" / "anno_training.pickle", "wb") as f:
        pickle.dump({0: Payload()}, f)
    with pytest.raises(pickle.UnpicklingError, match="system"):
        build.build("rhd", "synthetic", raw, tmp_path / "tfds")
    assert not marker.exists()
