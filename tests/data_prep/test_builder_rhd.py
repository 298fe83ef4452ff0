"""The RHD builder on data_prep/rhd/dummy_data.

``tfds.testing.DatasetBuilderTestCase`` imports TensorFlow, which this project does not
install, so these tests do its job by hand: build from dummy_data (the session fixture
``rhd_synthetic_data_dir``), check split sizes, features and keys, and more (geometry against
the raw files, bad input).
"""

import errno
import json
import os
import pathlib
import pickle
import shutil
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_prep import build, safe_pickle
from data_prep import features as feature_lib
from data_prep.rhd import rhd_dataset_builder as rhd
from handvae.data.source import decode_example
from handvae.ops import camera

DUMMY = pathlib.Path(__file__).resolve().parents[2] / "data_prep" / "rhd" / "dummy_data"
RAW = DUMMY / rhd.DATA_FOLDER


def _annotations(folder):
    with open(RAW / folder / f"anno_{folder}.pickle", "rb") as f:
        return safe_pickle.load(f)


def _source(data_dir, split, config="synthetic"):
    version_dir = os.path.join(data_dir, "rhd", config, str(rhd.Builder.VERSION))
    source = tfds.builder_from_directory(version_dir).as_data_source(split=split)
    return [decode_example(source[i]) for i in range(len(source))]


def _raw(folder, frame):
    name = f"{frame:05d}.png"
    image = feature_lib.read_png(pathlib.Path(RAW / folder / "color" / name))
    depth = rhd.decode_depth(feature_lib.read_png(pathlib.Path(RAW / folder / "depth" / name)))
    mask = feature_lib.read_png(pathlib.Path(RAW / folder / "mask" / name))
    return image, depth, mask if mask.ndim == 2 else mask[..., 0]


def test_splits_features_and_keys(rhd_synthetic_data_dir):
    info = tfds.builder_from_directory(
        os.path.join(rhd_synthetic_data_dir, "rhd", "synthetic", str(rhd.Builder.VERSION))).info
    training = [f"training/{int(k):05d}" for k in sorted(_annotations("training"), key=int)]
    held = feature_lib.validation_keys(training, rhd.VALIDATION_SHARE)
    expected = {"train": [k for k in training if k not in held],
                "validation": [k for k in training if k in held],
                "test": [f"evaluation/{int(k):05d}"
                         for k in sorted(_annotations("evaluation"), key=int)]}
    assert len(expected["validation"]) == 1 and len(expected["train"]) == 2
    for split, keys in expected.items():
        assert info.splits[split].num_examples == len(keys)
        assert [ex["frame"] for ex in _source(rhd_synthetic_data_dir, split)] == keys
    example = _source(rhd_synthetic_data_dir, "train")[0]
    shapes = {"image": (512, 512, 3), "keypoints_3d": (21, 3), "keypoints_2d": (21, 2),
              "visible": (21,), "root": (3,), "K_image": (3, 3), "view_rotation": (3, 3)}
    for key, shape in shapes.items():
        assert example[key].shape == shape, key
    assert example["image"].dtype == np.uint8 and example["crop_side"] == 256
    np.testing.assert_allclose(example["K_image"][:2, 2], 255.5)
    assert example["points"].ndim == 2 and example["points"].shape[1] == 3
    assert 32 <= example["num_points"] == len(example["points"]) <= feature_lib.MAX_POINTS
    assert example["side"] in (0, 1)
    assert "tensorflow" not in sys.modules


def test_instructions_are_numbered_and_name_the_folder():
    for step in ("1.", "2.", "3.", "4."):
        assert step in rhd.MANUAL_DOWNLOAD_INSTRUCTIONS
    assert "RHD_published_v2" in rhd.MANUAL_DOWNLOAD_INSTRUCTIONS


def test_stored_geometry_matches_the_raw_frame(rhd_synthetic_data_dir):
    """Undoing normalisation, mirroring and view correction gives back the raw annotation;
    the surface points lie on the raw depth map inside the dominant hand's mask."""
    annotations = _annotations("training")
    source = _source(rhd_synthetic_data_dir, "train") + \
        _source(rhd_synthetic_data_dir, "validation")
    for example in source:
        frame = int(example["frame"].split("/")[1])
        anno = annotations[frame]
        image, depth, mask = _raw("training", frame)
        side, hand_mask = rhd.dominant_hand(mask)
        assert side == example["side"]
        unmirror = np.array([-1.0, 1, 1]) if side == rhd.LEFT else np.ones(3)
        rotation = example["view_rotation"].astype(np.float64)
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-6)

        metric = example["keypoints_3d"] * example["scale"] + example["root"]
        np.testing.assert_allclose(camera.project(metric, example["K_image"]),
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


def _copy_dummy(tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(DUMMY, raw)
    return raw, raw / rhd.DATA_FOLDER / "training", raw / rhd.DATA_FOLDER / "evaluation"


def _report(builder):
    with open(os.path.join(builder.data_dir, "build_report.json")) as f:
        return json.load(f)["splits"]


def test_bad_train_frames_are_skipped_and_test_frames_kept(tmp_path, caplog):
    raw, training, evaluation = _copy_dummy(tmp_path)
    train_frames = sorted(_annotations("training"), key=int)
    test_frames = sorted(_annotations("evaluation"), key=int)
    # a truncated colour PNG of a training frame: skipped, named
    corrupt = training / "color" / f"{int(train_frames[0]):05d}.png"
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    # an empty hand mask and keypoints far outside the image in test frames: kept
    from PIL import Image
    Image.fromarray(np.zeros((320, 320), np.uint8)).save(
        evaluation / "mask" / f"{int(test_frames[1]):05d}.png")
    annotations = _annotations("evaluation")
    annotations[test_frames[0]]["xyz"] = annotations[test_frames[0]]["xyz"] + [5.0, 0, 0]
    with open(evaluation / "anno_evaluation.pickle", "wb") as f:
        pickle.dump(annotations, f)

    with caplog.at_level("WARNING"):
        builder = build.build("rhd", "synthetic", raw, tmp_path / "tfds")
    splits = builder.info.splits
    assert splits["train"].num_examples + splits["validation"].num_examples == \
        len(train_frames) - 1
    assert splits["test"].num_examples == len(test_frames)
    report = _report(builder)
    assert report["test"] == {"defined": len(test_frames), "stored": len(test_frames),
                              "skipped": {}}
    skipped = {r: n for s in ("train", "validation") for r, n in report[s]["skipped"].items()}
    assert skipped == {"corrupt or truncated PNG": 1}
    assert corrupt.name in caplog.text and "corrupt or truncated PNG" in caplog.text
    test = _source(tmp_path / "tfds", "test")
    assert test[0]["visible"].sum() == 0                 # the far hand: nothing visible
    assert test[1]["num_points"] == 0 and test[1]["points"].shape == (0, 3)   # no mask


def test_malformed_annotations_are_skipped_counted_and_named(tmp_path, caplog):
    """Missing key, non-integer key, None, NaN keypoints, NaN visibility: never fatal."""
    raw, training, evaluation = _copy_dummy(tmp_path)
    annotations = _annotations("training")
    good = annotations[sorted(annotations, key=int)[0]]
    nan_xyz = {k: np.array(v, np.float64) for k, v in good.items()}
    nan_xyz["xyz"][30, 1] = np.nan
    nan_vis = {k: np.array(v, np.float64) for k, v in good.items()}
    nan_vis["uv_vis"][30, 2] = np.nan
    annotations.update({"abc": good, 100: None, 101: {"xyz": good["xyz"]}, 102: nan_xyz,
                        103: nan_vis})
    with open(training / "anno_training.pickle", "wb") as f:
        pickle.dump(annotations, f)
    with caplog.at_level("WARNING"):
        builder = build.build("rhd", "synthetic", raw, tmp_path / "tfds")
    report = _report(builder)
    assert report["train"]["skipped"] == {
        "non-integer frame key": 1, "annotation not a dict": 1, "missing annotation key": 1,
        "non-finite keypoints": 1, "non-finite visibility": 1}
    assert report["train"]["defined"] + report["validation"]["defined"] == 3 + 5
    assert builder.info.splits["train"].num_examples + \
        builder.info.splits["validation"].num_examples == 3
    for named in ("'abc'", "100", "101", "102", "103"):
        assert named in caplog.text


def test_rebuild_after_the_raw_data_changed(tmp_path, caplog):
    raw, training, evaluation = _copy_dummy(tmp_path)
    first = build.build("rhd", "synthetic", raw, tmp_path / "tfds")
    assert first.info.splits["test"].num_examples == 2
    with caplog.at_level("INFO"):
        again = build.build("rhd", "synthetic", raw, tmp_path / "tfds")
    assert "up to date" in caplog.text and again.info.splits["test"].num_examples == 2
    annotations = _annotations("evaluation")
    annotations.pop(sorted(annotations, key=int)[0])
    with open(evaluation / "anno_evaluation.pickle", "wb") as f:
        pickle.dump(annotations, f)
    caplog.clear()
    with caplog.at_level("WARNING"):
        rebuilt = build.build("rhd", "synthetic", raw, tmp_path / "tfds")
    assert "differ" in caplog.text and "rebuilding" in caplog.text
    assert rebuilt.info.splits["test"].num_examples == 1
    assert len(_source(tmp_path / "tfds", "test")) == 1


def test_a_data_set_without_manifest_is_replaced_only_with_overwrite(tmp_path):
    raw, _, _ = _copy_dummy(tmp_path)
    built = build.build("rhd", "synthetic", raw, tmp_path / "tfds")
    os.remove(os.path.join(built.data_dir, build.MANIFEST))
    with pytest.raises(FileExistsError, match="--overwrite"):
        build.build("rhd", "synthetic", raw, tmp_path / "tfds")
    assert build.build("rhd", "synthetic", raw, tmp_path / "tfds", overwrite=True)
    with pytest.raises(SystemExit):
        os.remove(os.path.join(built.data_dir, build.MANIFEST))
        build.main(["--dataset", "rhd", "--config", "synthetic", "--manual_dir", str(raw),
                    "--data_dir", str(tmp_path / "tfds"), "--no-progress"])
    build.main(["--dataset", "rhd", "--config", "synthetic", "--manual_dir", str(raw),
                "--data_dir", str(tmp_path / "tfds"), "--no-progress", "--overwrite"])


def test_an_interrupted_build_leaves_nothing_that_reads_as_complete(tmp_path, monkeypatch):
    from handvae.data import source as source_lib
    import ml_collections

    raw, _, _ = _copy_dummy(tmp_path)
    data_dir = tmp_path / "tfds"
    config = ml_collections.ConfigDict({"dataset": "synthetic", "data_dir": str(data_dir)})
    # a build killed (SIGKILL) mid-way leaves its temporary folder: a reader ignores it ...
    stale = data_dir / "rhd" / "synthetic" / f".incomplete-{rhd.Builder.VERSION}-999999999"
    stale.mkdir(parents=True)
    (stale / "dataset_info.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="Build it first"):
        source_lib.load_source(config, "train")
    # ... the next build removes it (its process is dead), and an exception in a build
    # removes that build's own temporary folder: nothing is left that reads as built
    original = build._encode_chunk

    def crash(tasks):
        if any(t.split == "test" for t in tasks):
            raise KeyboardInterrupt
        return original(tasks)

    monkeypatch.setattr(build, "_encode_chunk", crash)
    with pytest.raises(KeyboardInterrupt):
        build.build("rhd", "synthetic", raw, data_dir)
    assert list((data_dir / "rhd" / "synthetic").iterdir()) == []
    monkeypatch.setattr(build, "_encode_chunk", original)
    build.build("rhd", "synthetic", raw, data_dir)
    assert sorted(p.name for p in (data_dir / "rhd" / "synthetic").iterdir()) == \
        [str(rhd.Builder.VERSION)]
    assert len(source_lib.load_source(config, "test")) == 2


def test_a_full_disk_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    from array_record.python import array_record_module

    class FullDisk:
        def __init__(self, path, options):
            pass

        def write(self, record):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            pass

    monkeypatch.setattr(array_record_module, "ArrayRecordWriter", FullDisk)
    with pytest.raises(OSError, match="disk full while building rhd/synthetic"):
        build.build("rhd", "synthetic", DUMMY, tmp_path / "tfds")
    assert list((tmp_path / "tfds" / "rhd" / "synthetic").iterdir()) == []


def test_output_does_not_depend_on_the_worker_count(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "CHUNK", 1)
    one = build.build("rhd", "synthetic", DUMMY, tmp_path / "one", workers=1)
    two = build.build("rhd", "synthetic", DUMMY, tmp_path / "two", workers=2)
    for split in ("train", "validation", "test"):
        names = sorted(f for f in os.listdir(one.data_dir) if f"-{split}." in f)
        assert names
        for name in names:
            with open(os.path.join(one.data_dir, name), "rb") as a, \
                    open(os.path.join(two.data_dir, name), "rb") as b:
                assert a.read() == b.read(), name


def test_shards_are_bounded_and_read_back_in_key_order(tmp_path):
    built = build.build("rhd", "synthetic", DUMMY, tmp_path, shard_bytes=1)
    assert built.info.splits["test"].shard_lengths == [1, 1]
    assert [ex["frame"] for ex in _source(tmp_path, "test")] == \
        ["evaluation/00000", "evaluation/00001"]


def test_plain_config_has_no_view_correction(tmp_path):
    build.build("rhd", "synthetic_plain", DUMMY, tmp_path)
    annotations = _annotations("evaluation")
    for example in _source(tmp_path, "test", config="synthetic_plain"):
        np.testing.assert_array_equal(example["view_rotation"], np.eye(3))
        anno = annotations[int(example["frame"].split("/")[1])]
        metric = example["keypoints_3d"] * example["scale"] + example["root"]
        unmirror = np.array([-1.0, 1, 1]) if example["side"] == rhd.LEFT else np.ones(3)
        joints = slice(0, 21) if example["side"] == rhd.LEFT else slice(21, 42)
        np.testing.assert_allclose(metric * unmirror, anno["xyz"][joints], atol=2e-5)
        np.testing.assert_allclose(camera.project(metric, example["K_image"]),
                                   example["keypoints_2d"], atol=2e-3)


def test_malicious_annotation_pickle_stops_the_build(tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(DUMMY, raw)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(raw / rhd.DATA_FOLDER / "training" / "anno_training.pickle", "wb") as f:
        pickle.dump({0: Payload()}, f)
    with pytest.raises(ValueError, match=r"anno_training\.pickle cannot be read.*system"):
        build.build("rhd", "synthetic", raw, tmp_path / "tfds")
    assert not marker.exists()


# --- Safety (issue 24): damaged pickles named in one line; a reused build says so -----------

@pytest.mark.parametrize("damage", ["not a pickle", "truncated", "empty"])
def test_a_damaged_annotation_pickle_is_one_line_naming_the_file(tmp_path, capsys, damage):
    raw, training, _ = _copy_dummy(tmp_path)
    path = training / "anno_training.pickle"
    data = path.read_bytes()
    path.write_bytes({"not a pickle": b"RHD annotations, as text\n",
                      "truncated": data[:len(data) // 2], "empty": b""}[damage])
    with pytest.raises(SystemExit) as error:
        build.main(["--dataset", "rhd", "--config", "synthetic", "--manual_dir", str(raw),
                    "--data_dir", str(tmp_path / "tfds"), "--no-progress"])
    assert error.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "cannot be read" in err, err
    assert "Traceback" not in err
    if damage == "empty":
        assert "the file is empty" in err


def test_an_up_to_date_rebuild_says_reused_and_leaves_no_incomplete_folder(tmp_path, capsys):
    raw, _, _ = _copy_dummy(tmp_path)
    argv = ["--dataset", "rhd", "--config", "synthetic", "--manual_dir", str(raw),
            "--data_dir", str(tmp_path / "tfds"), "--no-progress"]
    build.main(argv)
    assert "built rhd/synthetic into" in capsys.readouterr().out
    parent = tmp_path / "tfds" / "rhd" / "synthetic"
    stale = parent / f".incomplete-{rhd.Builder.VERSION}-999999999"  # a killed build's
    stale.mkdir()
    build.main(argv)
    out = capsys.readouterr().out
    assert "is up to date" in out and "reused" in out and "built" not in out
    assert sorted(p.name for p in parent.iterdir()) == [str(rhd.Builder.VERSION)]


def test_raw_data_changing_during_the_build_is_an_error(tmp_path, monkeypatch):
    raw, training, _ = _copy_dummy(tmp_path)
    original = build._encode_chunk

    def edit_then_encode(tasks):
        (training / "color" / "00099.png").write_bytes(b"new frame")
        return original(tasks)

    monkeypatch.setattr(build, "_encode_chunk", edit_then_encode)
    with pytest.raises(RuntimeError, match="changed while the build ran"):
        build.build("rhd", "synthetic", raw, tmp_path / "tfds")
    assert list((tmp_path / "tfds" / "rhd" / "synthetic").iterdir()) == []
