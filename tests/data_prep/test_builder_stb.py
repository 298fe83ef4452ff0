"""The STB builder: label conversion on a hand-built example, and a build of dummy_data.

(``tfds.testing.DatasetBuilderTestCase`` needs TensorFlow; see test_builder_rhd.py.)
"""

import pathlib
import shutil

import numpy as np
import pytest
import scipy.io

from data_prep import build
from data_prep import features as feature_lib
from data_prep.stb import stb_dataset_builder as stb
from handvae.data.source import decode_example
from handvae.ops import camera, skeleton

DUMMY = pathlib.Path(__file__).resolve().parents[2] / "data_prep" / "stb" / "dummy_data"


def _hand_built_labels():
    """handPara [3, 21, 1] with STB joint i at a distinct point (mm, depth frame)."""
    stb_points = np.array([[10.0 * i, -5.0 * i, 400.0 + i] for i in range(21)])
    return stb_points, stb_points.T[:, :, None]


def test_labels_reorder_joints_by_name_and_move_to_the_colour_frame():
    stb_points, hand_para = _hand_built_labels()
    keypoints = stb.labels_to_keypoints(hand_para)[0]            # [21, 3] m, RHD order
    for j, name in enumerate(skeleton.JOINT_NAMES):
        if name == "wrist":
            continue
        k = skeleton.STB_JOINT_NAMES.index(name)
        expected = camera.stb_depth_to_color(stb_points[k]) / 1000.0
        np.testing.assert_allclose(keypoints[j], expected, atol=1e-12, err_msg=name)


def test_palm_centre_becomes_a_wrist():
    """wrist = ring_mcp + 2 (palm − ring_mcp) (Ge et al. 2019); a rigid map keeps it."""
    stb_points, hand_para = _hand_built_labels()
    palm = stb_points[0]
    ring_mcp = stb_points[skeleton.STB_JOINT_NAMES.index("ring_mcp")]
    wrist_depth_frame = 2 * palm - ring_mcp
    keypoints = stb.labels_to_keypoints(hand_para)[0]
    np.testing.assert_allclose(keypoints[skeleton.WRIST],
                               camera.stb_depth_to_color(wrist_depth_frame) / 1000, atol=1e-12)


def test_depth_frame_round_trip():
    points = np.random.default_rng(0).normal(size=(5, 3)) * 100 + [0, 0, 500]
    np.testing.assert_allclose(camera.stb_color_to_depth(camera.stb_depth_to_color(points)),
                               points, atol=1e-9)


def test_build_dummy_data(tmp_path):
    builder = build.build("stb", "synthetic", DUMMY, tmp_path)
    # one training sequence in dummy_data: validation holds out one of its two frames
    expected = (("train", ["B2Counting"], 1), ("validation", ["B2Counting"], 1),
                ("test", ["B1Counting"], 2))
    for split, sequences, count in expected:
        labels = {s: scipy.io.loadmat(DUMMY / "labels" / f"{s}_SK.mat")["handPara"]
                  for s in sequences}
        assert builder.info.splits[split].num_examples == count
        source = builder.as_data_source(split=split)
        examples = [decode_example(source[i]) for i in range(len(source))]
        frames = [ex["frame"] for ex in examples]
        assert frames == sorted(frames) and {f.split("/")[0] for f in frames} == set(sequences)
        for example in examples:
            sequence, index = example["frame"].split("/")
            expected_kp = stb.labels_to_keypoints(labels[sequence])[int(index)]
            assert example["side"] == stb.LEFT
            rotation = example["view_rotation"].astype(np.float64)
            unmirror = np.array([-1.0, 1, 1])
            metric = example["keypoints_3d"] * example["scale"] + example["root"]
            np.testing.assert_allclose((metric * unmirror) @ rotation, expected_kp, atol=2e-5)
            np.testing.assert_allclose(camera.project(metric, example["K_image"]),
                                       example["keypoints_2d"], atol=2e-3)
            points = ((example["points"] * example["scale"] + example["root"]) * unmirror) \
                @ rotation
            near = feature_lib.points_near_skeleton(points, expected_kp, 0.0205)
            assert near.all() and len(points) >= feature_lib.MIN_HAND_POINTS


def test_test_frame_without_depth_is_kept_with_no_points(tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(DUMMY, raw)
    (raw / "images" / "B1Counting" / "SK_depth_1.png").unlink()
    builder = build.build("stb", "synthetic", raw, tmp_path / "tfds")
    assert builder.info.splits["test"].num_examples == 2
    example = decode_example(builder.as_data_source(split="test")[1])
    assert example["frame"] == "B1Counting/0001" and example["points"].shape == (0, 3)


def test_validation_is_the_held_out_sequence(tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(DUMMY, raw)
    for sequence in ("B6Random", "B3Counting"):
        shutil.copytree(raw / "images" / "B2Counting", raw / "images" / sequence)
        shutil.copy(raw / "labels" / "B2Counting_SK.mat", raw / "labels" / f"{sequence}_SK.mat")
    builder = build.build("stb", "synthetic", raw, tmp_path / "tfds")
    for split, sequences in (("train", {"B2Counting", "B3Counting"}),
                             ("validation", {"B6Random"}), ("test", {"B1Counting"})):
        source = builder.as_data_source(split=split)
        assert {decode_example(source[i])["frame"].split("/")[0]
                for i in range(len(source))} == sequences


def test_hand_segmentation_keeps_points_near_bones_only():
    keypoints = stb.labels_to_keypoints(_hand_built_labels()[1])[0]
    # a flat depth map through the middle MCP, 1 m behind it elsewhere
    depth_mm = np.full(camera.STB_IMAGE_SIZE, 0.0)
    z_mid = camera.stb_color_to_depth(1000 * keypoints[skeleton.ROOT_JOINT])[2]
    depth_mm[:] = z_mid
    points = stb.hand_points_from_depth(depth_mm, keypoints)
    assert len(points) > 0
    distances_ok = feature_lib.points_near_skeleton(points * 1000, 1000 * keypoints,
                                                    stb.HAND_RADIUS_MM + 1e-6)
    assert distances_ok.all()


def test_wrong_manual_dir_names_the_expected_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"B1Counting_SK\.mat(.|\n)*1\. Open"):
        build.build("stb", "synthetic", tmp_path, tmp_path / "tfds")
