"""python -m experiments.predict / experiments.export on a 2-step trained work directory:
outputs per image, bad files named, exit codes, the summary line, the exported file."""

import json
import os
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "inference"))
from inference_helpers import trained_workdir

from experiments import export as export_cli
from experiments import predict
from handvae.inference import outputs

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
