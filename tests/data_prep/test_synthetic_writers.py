"""The RHD and STB writers of data_prep.synthetic: layout, annotations, encodings, seeds."""

import pathlib

import numpy as np
import pytest

from data_prep.synthetic import __main__ as cli
from data_prep.synthetic import output, rhd_writer, scene, stb_writer
from handvae.ops import camera, skeleton

RHD_ROOT = "RHD_published_v2"


@pytest.fixture(scope="module")
def rhd_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("rhd") / "synthetic_rhd"
    rhd_writer.write_rhd(out, num_train=3, num_eval=2, seed=7, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def stb_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("stb") / "synthetic_stb"
    stb_writer.write_stb(out, num_train=2, num_eval=1, seed=7, workers=1, progress=False,
                         train_sequences=("B2Counting", "B2Random"),
                         test_sequences=("B1Counting",))
    return out


def _files(root: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_rhd_layout(rhd_dir):
    names = set(_files(rhd_dir))
    for split, count in (("training", 3), ("evaluation", 2)):
        assert f"{RHD_ROOT}/{split}/anno_{split}.pickle" in names
        for kind in ("color", "mask", "depth"):
            for i in range(count):
                assert f"{RHD_ROOT}/{split}/{kind}/{i:05d}.png" in names
    assert len(names) == 2 + 3 * 5 + 1  # + the generator's marker, .handvae-synthetic
    assert not list(rhd_dir.parent.glob(".*partial*"))  # the temporary folder is gone


def test_rhd_annotations_project_and_images_decode(rhd_dir):
    split = rhd_dir / RHD_ROOT / "training"
    annotations = rhd_writer.read_annotations(split / "anno_training.pickle")
    assert sorted(annotations) == [0, 1, 2]
    for index, anno in annotations.items():
        assert set(anno) == {"xyz", "uv_vis", "K"}
        assert anno["xyz"].shape == (42, 3) and anno["uv_vis"].shape == (42, 3)
        assert anno["K"].shape == (3, 3)
        uv = camera.project(anno["xyz"].astype(np.float64), anno["K"].astype(np.float64))
        np.testing.assert_allclose(uv, anno["uv_vis"][:, :2], atol=0.01)
        assert set(np.unique(anno["uv_vis"][:, 2])) <= {0.0, 1.0}
        color = output.load_png(split / "color" / f"{index:05d}.png")
        mask = output.load_png(split / "mask" / f"{index:05d}.png")
        depth = output.load_png(split / "depth" / f"{index:05d}.png")
        assert color.shape == (320, 320, 3) and color.dtype == np.uint8
        assert mask.shape == (320, 320) and mask.dtype == np.uint8
        assert depth.shape == (320, 320, 3) and np.all(depth[..., 2] == 0)
        # Round trip against the in-memory frame: depth within 1 mm, identical mask.
        frame, _, expected_mask, _ = rhd_writer.make_frame(7, "train", index)
        np.testing.assert_array_equal(mask, expected_mask)
        np.testing.assert_array_equal(color, frame.rgb)
        decoded = rhd_writer.decode_depth(depth)
        assert np.abs(decoded - np.clip(frame.depth, 0, 5)).max() < 1e-3


def test_rhd_point_cloud_from_disk_lies_on_the_annotated_hand(rhd_dir):
    split = rhd_dir / RHD_ROOT / "evaluation"
    annotations = rhd_writer.read_annotations(split / "anno_evaluation.pickle")
    for index, anno in annotations.items():
        depth = rhd_writer.decode_depth(output.load_png(split / "depth" / f"{index:05d}.png"))
        mask = output.load_png(split / "mask" / f"{index:05d}.png")
        left = np.sum((mask >= 2) & (mask <= 17)) > np.sum(mask >= 18)
        hand_mask = ((mask >= 2) & (mask <= 17)) if left else (mask >= 18)
        points = camera.depth_to_points(depth, anno["K"].astype(np.float64), hand_mask)
        keypoints = anno["xyz"][:21] if left else anno["xyz"][21:]
        # Distance of every surface point to the nearest bone of the annotated skeleton: the
        # palm's solid reaches ~45 mm from the wrist–MCP bones, fingers ≤ 16 mm.
        a = keypoints[[p for p, _ in skeleton.BONES]]
        b = keypoints[[c for _, c in skeleton.BONES]]
        ab = b - a
        s = np.clip(np.einsum("pbi,bi->pb", points[:, None] - a, ab)
                    / np.einsum("bi,bi->b", ab, ab), 0, 1)
        closest = a + s[..., None] * ab
        distance = np.linalg.norm(points[:, None] - closest, axis=-1).min(axis=1)
        assert len(points) > 100
        assert distance.max() < 0.05 and np.median(distance) < 0.02


def test_rhd_depth_packing_has_16_bit_precision():
    depth = np.linspace(0.0, 5.0, 4001).reshape(1, -1)
    packed = rhd_writer.encode_depth(depth)
    np.testing.assert_array_equal(packed[..., 2], 0)
    decoded = rhd_writer.decode_depth(packed)
    assert np.abs(decoded - depth).max() <= 0.5 * 5.0 / 65535 + 1e-6
    # The README's formula: metres = (R·256 + G) / 65535 · 5.
    r, g = packed[0, 1234, 0], packed[0, 1234, 1]
    assert (int(r) * 256 + int(g)) / 65535 * 5 == pytest.approx(decoded[0, 1234], abs=1e-6)


@pytest.mark.parametrize("index", range(4))
def test_rhd_frame_mask_depth_and_visibility(index):
    frame, anno, mask, _ = rhd_writer.make_frame(11, "eval", index)
    shown = slice(0, 21) if frame.side == "left" else slice(21, 42)
    hidden = slice(21, 42) if frame.side == "left" else slice(0, 21)
    ids = np.unique(mask[mask > 1])
    low, high = (2, 17) if frame.side == "left" else (18, 33)
    assert ids.min() >= low and ids.max() <= high and len(ids) >= 4
    assert set(np.unique(mask)) <= {0, 1} | set(range(low, high + 1))
    # The other hand is annotated but outside the image and invisible.
    uv_hidden = anno["uv_vis"][hidden, :2]
    outside = ((uv_hidden[:, 0] < 0) | (uv_hidden[:, 0] > 319) | (uv_hidden[:, 1] < 0)
               | (uv_hidden[:, 1] > 319))
    assert outside.all() and np.all(anno["uv_vis"][hidden, 2] == 0)
    # Rendered depth at visible keypoints lies within a finger radius of the keypoint depth.
    visible = anno["uv_vis"][shown, 2] == 1
    assert visible.sum() >= 5
    uv = np.round(anno["uv_vis"][shown, :2][visible]).astype(int)
    seen = frame.depth[uv[:, 1], uv[:, 0]]
    z = anno["xyz"][shown, 2][visible]
    radius = frame.keypoint_radius[visible]
    assert np.all(seen <= z + 1e-4)  # the keypoint lies inside the rendered solid
    assert np.all(seen >= z - radius - scene.VISIBILITY_SLACK_M)
    # Finger radii are ≤ 16 mm; the wrist's solid is the forearm (≤ 25 mm · scale).
    assert np.all(radius <= 0.03) and np.all(radius[1:] <= 0.016)


def test_same_seed_same_bytes_regardless_of_workers(rhd_dir, tmp_path):
    again = tmp_path / "again"
    rhd_writer.write_rhd(again, num_train=3, num_eval=2, seed=7, workers=2, progress=False)
    assert _files(again) == _files(rhd_dir)
    other = tmp_path / "other"
    rhd_writer.write_rhd(other, num_train=1, num_eval=1, seed=8, workers=1, progress=False)
    name = f"{RHD_ROOT}/training/color/00000.png"
    assert _files(other)[name] != _files(rhd_dir)[name]


def test_stb_layout_and_labels(stb_dir):
    names = set(_files(stb_dir)) - {".handvae-synthetic"}  # the generator's marker
    assert names == {"images/B2Counting/SK_color_0.png", "images/B2Counting/SK_depth_0.png",
                     "images/B2Random/SK_color_0.png", "images/B2Random/SK_depth_0.png",
                     "images/B1Counting/SK_color_0.png", "images/B1Counting/SK_depth_0.png",
                     "labels/B2Counting_SK.mat", "labels/B2Random_SK.mat",
                     "labels/B1Counting_SK.mat"}
    handpara = stb_writer.read_labels(stb_dir / "labels" / "B2Random_SK.mat")
    assert handpara.shape == (3, 21, 1) and handpara.dtype == np.float64
    frame, depth_mm = stb_writer.make_frame(7, "B2Random", 0)
    color = output.load_png(stb_dir / "images" / "B2Random" / "SK_color_0.png")
    assert color.shape == (480, 640, 3)
    np.testing.assert_array_equal(color, frame.rgb)
    packed = output.load_png(stb_dir / "images" / "B2Random" / "SK_depth_0.png")
    assert packed.shape == (480, 640, 3) and np.all(packed[..., 2] == 0)
    decoded = stb_writer.decode_depth(packed)
    np.testing.assert_allclose(decoded, np.round(depth_mm), atol=0)
    assert np.abs(decoded - depth_mm).max() <= 0.5 + 1e-9
    # A loader's path: depth frame → colour frame, STB → RHD order, palm → wrist, mm → m.
    labels_depth_frame = handpara.transpose(2, 1, 0)[0]
    rhd = camera.stb_depth_to_color(labels_depth_frame)[skeleton.STB_TO_RHD]
    np.testing.assert_allclose(skeleton.stb_palm_to_wrist(rhd) / 1000.0, frame.keypoints,
                               atol=1e-9)


def test_stb_palm_centre_convention():
    frame, _ = stb_writer.make_frame(3, "B1Random", 0)
    handpara = stb_writer.hand_para(frame.keypoints[None])
    stb = camera.stb_depth_to_color(handpara.transpose(2, 1, 0)[0]) / 1000.0
    wrist, ring_mcp = frame.keypoints[0], frame.keypoints[16]
    # STB's palm centre (slot 0) is halfway between the wrist and the ring MCP.
    np.testing.assert_allclose(stb[0], 0.5 * (wrist + ring_mcp), atol=1e-12)
    assert skeleton.STB_JOINT_NAMES[skeleton.RHD_TO_STB[16]] == "ring_mcp"
    np.testing.assert_allclose(stb[skeleton.RHD_TO_STB[16]], ring_mcp, atol=1e-12)
    np.testing.assert_allclose(stb[4], frame.keypoints[17], atol=1e-12)  # little tip


def test_stb_depth_image_is_in_the_depth_camera():
    near, offsets = [], []
    for index in range(3):
        frame, depth_mm = stb_writer.make_frame(5, "B3Counting", index)
        keypoints_depth = camera.stb_color_to_depth(1000.0 * frame.keypoints)
        uv = camera.project(keypoints_depth, camera.STB_SK_DEPTH_K)
        pixel = np.round(uv[frame.visible]).astype(int)
        seen = depth_mm[pixel[:, 1], pixel[:, 0]]
        z = keypoints_depth[frame.visible, 2]
        near += list(np.abs(seen - z) <= 1000.0 * (frame.keypoint_radius[frame.visible]
                                                   + scene.VISIBILITY_SLACK_M) + 3.0)
        uv_colour = camera.project(1000.0 * frame.keypoints, camera.STB_SK_COLOR_K)
        offsets.append(np.abs(uv_colour - uv).max())
    # Seen from 24 mm beside the colour camera, most keypoints visible in colour show the
    # hand's surface within a finger radius (plus 1 mm sensor noise) in the depth image.
    assert len(near) >= 10 and np.mean(near) >= 0.7
    # The colour intrinsics would put them elsewhere: the depth image is not registered.
    assert min(offsets) > 20.0


def test_stb_spreads_frames_over_sequences(tmp_path):
    assert output.spread(7, 3) == [3, 2, 2]
    assert stb_writer.TEST_SEQUENCES == ("B1Counting", "B1Random")
    assert len(stb_writer.TRAIN_SEQUENCES) == 10 and "B6Random" in stb_writer.TRAIN_SEQUENCES


def test_bad_input_is_refused(rhd_dir, tmp_path):
    with pytest.raises(FileExistsError, match="--overwrite"):
        rhd_writer.write_rhd(rhd_dir, num_train=1, num_eval=1, progress=False)
    for bad in (0, -3):
        with pytest.raises(ValueError, match="--num-train"):
            rhd_writer.write_rhd(tmp_path / "x", num_train=bad, num_eval=1, progress=False)
        with pytest.raises(ValueError, match="--num-eval"):
            stb_writer.write_stb(tmp_path / "y", num_train=1, num_eval=bad, progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    with pytest.raises(SystemExit) as error:
        cli.main(["--format", "nyu", "--out", str(tmp_path / "z"), "--num-train", "1",
                  "--num-eval", "1"])
    assert error.value.code == 2
    with pytest.raises(SystemExit):
        cli.main(["--format", "rhd", "--out", str(rhd_dir), "--num-train", "1",
                  "--num-eval", "1"])


def test_failed_run_leaves_no_partial_data_set(tmp_path, monkeypatch):
    def broken(job):
        raise RuntimeError("disk full")

    monkeypatch.setattr(rhd_writer, "_write_frame", broken)
    with pytest.raises(RuntimeError):
        rhd_writer.write_rhd(tmp_path / "out", num_train=2, num_eval=1, workers=1,
                             progress=False)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_and_cli_writes(tmp_path, capsys):
    out = tmp_path / "rhd"
    assert cli.main(["--format", "rhd", "--out", str(out), "--num-train", "1",
                     "--num-eval", "1", "--seed", "1", "--workers", "1", "--no-progress"]) == 0
    assert cli.main(["--format", "rhd", "--out", str(out), "--num-train", "2",
                     "--num-eval", "1", "--workers", "1", "--no-progress",
                     "--overwrite"]) == 0
    annotations = rhd_writer.read_annotations(
        out / RHD_ROOT / "training" / "anno_training.pickle")
    assert sorted(annotations) == [0, 1]


def test_committed_dummy_data_matches_the_generator(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "DUMMY_RHD_DIR", tmp_path / "rhd")
    monkeypatch.setattr(cli, "DUMMY_STB_DIR", tmp_path / "stb")
    cli.write_dummy_data()
    data_prep = pathlib.Path(cli.__file__).resolve().parent.parent
    for name in ("rhd", "stb"):
        assert _files(tmp_path / name) == _files(data_prep / name / "dummy_data"), (
            f"data_prep/{name}/dummy_data is stale: run python -m data_prep.synthetic "
            "--dummy-data")
