"""python -m experiments.predict / experiments.export on a 2-step trained work directory:
outputs per image, bad files named, exit codes, the summary line, the exported file."""

import json
import os
import shutil
import sys

import jax
import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "inference"))
from inference_helpers import trained_workdir

from experiments import export as export_cli
from experiments import predict
from handvae.inference import Predictor, outputs
from handvae.models import vae

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, rhd_synthetic_data_dir):
    return trained_workdir(tmp_path_factory.mktemp("predict"), rhd_synthetic_data_dir)


def test_predict_writes_outputs_and_names_every_bad_input(tmp_path, workdir, capsys):
    photos, empty = tmp_path / "photos", tmp_path / "empty"
    photos.mkdir()
    empty.mkdir()
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(photos / "hand.png")
    Image.fromarray(np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 20).save(
        photos / "gray16.png")
    Image.fromarray(rgb).convert("RGBA").save(photos / "rgba.png")
    Image.fromarray(rgb).save(photos / "outside.jpg")
    (photos / "notes.png").write_text("not an image")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({
        "hand.png": [10, 5, 40, 40],
        "rgba.png": {"box": [5, 5, 30, 30], "hand_side": "left", "focal": 80.0,
                     "hand_scale": 0.03},
        "outside.jpg": [100, 100, 120, 130]}))
    out = tmp_path / "out"
    code = predict.main(["--workdir", workdir, "--input", str(photos), str(empty),
                         "--boxes", str(boxes), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert "predicted 3 of 5 images (3 failed)" in captured.out
    assert "images/s" in captured.out and str(out) in captured.out
    for name in ("notes.png", "outside.jpg", str(empty)):
        assert name in captured.err, name
    assert "outside the 64x48 image" in captured.err
    for stem in ("hand", "gray16", "rgba"):
        assert (out / f"{stem}.png").read_bytes()[:8] == PNG
        record = json.loads((out / f"{stem}.json").read_text())
        assert record["schema"] == outputs.SCHEMA and record["strategy"] == "R2HP"
        assert np.asarray(record["pose_3d"]).shape == (21, 3)
        assert np.asarray(record["keypoints_2d"]).shape == (21, 2)
        assert record["keypoints_2d_source"] == "heatmaps" and record["cloud_ply"] is None
    gray = json.loads((out / "gray16.json").read_text())
    assert "16-bit" in gray["conversion"] and gray["intrinsics_source"] == "default_fov"
    assert gray["box"] == [-0.5, -0.5, 63.5, 47.5]
    rgba = json.loads((out / "rgba.json").read_text())
    assert "alpha" in rgba["conversion"] and rgba["hand_side"] == "left"
    assert rgba["intrinsics"][0][0] == 80.0 and rgba["intrinsics_source"] == "focal"
    np.testing.assert_allclose(rgba["pose_3d_m"], np.asarray(rgba["pose_3d"]) * 0.03,
                               rtol=1e-6)
    assert not (out / "notes.json").exists()


def test_predict_exit_code_2_without_a_checkpoint(tmp_path, workdir, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(os.path.join(workdir, "config.json"), bare / "config.json")
    code = predict.main(["--workdir", str(bare), "--input", str(tmp_path), "--out",
                         str(tmp_path / "o")])
    assert code == 2 and str(bare) in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict.main(["--workdir", workdir, "--input", "x.png", "--box", "1,2,3", "--out", "o"])


def test_ply_round_trip(tmp_path):
    points = np.random.default_rng(1).normal(size=(7, 3))
    outputs.write_ply(points, str(tmp_path / "c.ply"))
    assert (tmp_path / "c.ply").read_text().startswith("ply\nformat ascii 1.0\n")
    np.testing.assert_allclose(outputs.read_ply(str(tmp_path / "c.ply")), points, rtol=1e-5)


def test_export_cli_writes_the_model(tmp_path, workdir, capsys):
    path = tmp_path / "model.jaxexport"
    assert export_cli.main(["--workdir", workdir, "--out", str(path)]) == 0
    assert path.stat().st_size > 0 and (tmp_path / "model.jaxexport.json").exists()
    meta = json.loads((tmp_path / "model.jaxexport.json").read_text())
    assert meta["image_size"] == 32 and meta["strategy"] == "R2HP"
    assert "exported R2HP" in capsys.readouterr().out


def test_boxes_from_rhd_annotations_match_the_dummy_frames():
    folder = os.path.join(os.path.dirname(predict.__file__), "..", "data_prep", "rhd",
                          "dummy_data", "RHD_published_v2", "evaluation")
    entries = predict.boxes_from_rhd_annotations(os.path.join(folder, "anno_evaluation.pickle"))
    assert sorted(entries) == sorted(n for n in os.listdir(os.path.join(folder, "color")))
    for entry in entries.values():
        x0, y0, x1, y1 = entry["box"]
        assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 320
        assert entry["hand_side"] in ("left", "right") and np.asarray(entry["K"]).shape == (3, 3)


def _photo(path, seed=0, size=(48, 64)):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
                    ).save(path)


def test_out_over_the_inputs_or_below_a_file_is_refused_before_the_model_loads(tmp_path,
                                                                              capsys):
    """Issue 24: ``--out`` = the input folder overwrote the photos with overlays (exit 0); an
    ``--out`` below a file failed with a traceback after the model had loaded."""
    photos = tmp_path / "photos"
    photos.mkdir()
    _photo(photos / "hand.png")
    before = (photos / "hand.png").read_bytes()
    (tmp_path / "notes.txt").write_text("mine")
    missing = str(tmp_path / "no_workdir")       # the model would fail to load: checked first
    for inputs, out, match in (
            ([str(photos)], photos, "is the folder of the input images"),
            ([str(photos / "hand.png")], photos, "is the folder of the input images"),
            ([str(photos)], tmp_path / "notes.txt", "notes.txt is a file"),
            ([str(photos)], tmp_path / "notes.txt" / "preds", "notes.txt is a file")):
        assert predict.main(["--workdir", missing, "--input", *inputs, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert match in err and "no_workdir" not in err and len(err.splitlines()) == 1, err
    for out, match in ((tmp_path / "notes.txt" / "m.jaxexport", "notes.txt is a file"),
                       (tmp_path / "notes.txt", "not written by export"),
                       (photos, "is a folder")):
        assert export_cli.main(["--workdir", missing, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert match in err and "no_workdir" not in err, err
    assert (photos / "hand.png").read_bytes() == before and os.listdir(photos) == ["hand.png"]
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_boxes_keys_that_match_no_image_are_refused(tmp_path, capsys):
    """Issue 24: a mistyped ``--boxes`` key was ignored and the whole image was cropped."""
    _photo(tmp_path / "hand.png")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"hand.png": [1, 2, 30, 40], "hnd.png": [1, 2, 30, 40]}))
    code = predict.main(["--workdir", str(tmp_path / "no_workdir"), "--input",
                         str(tmp_path / "hand.png"), "--boxes", str(boxes), "--out",
                         str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "'hnd.png'" in err and "boxes.json" in err and "'hand.png'" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, match", [
    (b"", "empty or truncated"), (b"hello, not a pickle\n", "not a readable"),
    (None, "truncated"), (b"\x80\x04K\x05.", "expected a dict")])
def test_unreadable_annotation_pickles_are_named_in_one_line(tmp_path, capsys, content, match):
    """Issue 24: an empty, truncated or foreign ``--rhd-annotations`` file gave a traceback."""
    path = tmp_path / "anno_evaluation.pickle"
    if content is None:   # the dummy data's real pickle, cut short
        real = os.path.join(os.path.dirname(predict.__file__), "..", "data_prep", "rhd",
                            "dummy_data", "RHD_published_v2", "evaluation",
                            "anno_evaluation.pickle")
        with open(real, "rb") as f:
            content = f.read()[:200]
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        predict.boxes_from_rhd_annotations(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    _photo(tmp_path / "hand.png")
    assert predict.main(["--workdir", str(tmp_path / "no_workdir"), "--input",
                         str(tmp_path / "hand.png"), "--rhd-annotations", str(path), "--out",
                         str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and len(err.splitlines()) == 1


def test_export_refuses_an_unknown_platform(tmp_path, capsys):
    """Issue 24: ``export --platform foo`` exited 0 with a file no machine can run."""
    with pytest.raises(SystemExit) as info:
        export_cli.main(["--workdir", str(tmp_path), "--out", str(tmp_path / "m"),
                         "--platform", "foo"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "'foo'" in err and "'cpu', 'cuda', 'rocm', 'tpu'" in err
    assert not (tmp_path / "m").exists()


def test_a_reused_out_replaces_only_predicts_own_files(tmp_path, workdir, capsys):
    """Issue 24: a reused ``--out`` kept another model's ``.ply``; outputs overwrote any file
    of the same name; a non-numeric ``focal`` stopped every image; a 60× box said nothing."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    out.mkdir()
    for seed, name in enumerate(("hand.png", "wide.png", "bad.png", "far.png")):
        _photo(photos / name, seed)
    outputs.write_ply(np.zeros((4, 3)), str(out / "hand.ply"))         # another model's cloud
    (out / "bad.json").write_text(json.dumps({"schema": outputs.SCHEMA}))  # an earlier run's
    _photo(out / "wide.png", 9)                                          # the user's own files
    user_png = (out / "wide.png").read_bytes()
    (out / "notes.txt").write_text("mine")
    (out / "far.ply").write_text("ply\nmy own scan\n")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"bad.png": {"box": [1, 2, 30, 40], "focal": "abc"},
                                 "far.png": [0, 0, 60 * 64, 60 * 48]}))
    code = predict.main(["--workdir", workdir, "--input", str(photos), "--boxes", str(boxes),
                         "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1 and "predicted 2 of 4 images (2 failed)" in captured.out, captured
    assert "bad.png: focal must be a positive number of pixels, got 'abc'" in captured.err
    assert f"{out / 'wide.png'} exists and was not written by predict" in captured.err
    assert "WARNING" in captured.err and "far.png: only" in captured.err
    assert json.loads((out / "far.json").read_text())["warnings"]
    assert json.loads((out / "hand.json").read_text())["cloud_ply"] is None
    assert not (out / "hand.ply").exists() and not (out / "bad.json").exists()
    assert (out / "wide.png").read_bytes() == user_png and not (out / "wide.json").exists()
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "far.ply").read_text() == "ply\nmy own scan\n"
    assert outputs.written_by_predict(str(out / "hand.png"))
    assert not outputs.written_by_predict(str(out / "wide.png"))


def test_a_cloud_models_outputs_are_replaced_by_the_next_models(tmp_path, workdir):
    """Issue 24: after a cloud strategy, another model's run left the old ``.ply`` behind."""
    model = vae.HandVAE(strategy="R2CP", latent_dim=8, image_size=32, resnet_width=4,
                        num_points=16, pose_hidden=16, folding_hidden=16)
    variables = vae.init_variables(model, jax.random.key(0),
                                   {"rgb": np.zeros((1, 32, 32, 3), np.float32)})
    _photo(tmp_path / "hand.png")
    out = str(tmp_path / "out")
    paths = [str(tmp_path / "hand.png")]
    assert predict.predict_files(Predictor(model, variables), paths, out, progress=False)[0] == 1
    assert sorted(os.listdir(out)) == ["hand.json", "hand.ply", "hand.png"]
    r2hp = Predictor.from_workdir(workdir, batch_size=1)
    assert predict.predict_files(r2hp, paths, out, overlays=False, progress=False)[0] == 1
    assert os.listdir(out) == ["hand.json"]
    assert json.loads((tmp_path / "out" / "hand.json").read_text())["strategy"] == "R2HP"
