"""Camera, rotation and skeleton conventions."""

import numpy as np
import pytest

from handvae.ops import camera, rotation, skeleton

K = np.array([[300.0, 0.0, 160.0], [0.0, 310.0, 150.0], [0.0, 0.0, 1.0]])


def test_project_unproject_round_trip():
    rng = np.random.default_rng(0)
    points = rng.uniform([-0.2, -0.2, 0.3], [0.2, 0.2, 0.8], size=(50, 3))
    uv = camera.project(points, K)
    np.testing.assert_allclose(camera.unproject(uv, points[:, 2], K), points, atol=1e-12)


def test_project_by_hand():
    np.testing.assert_allclose(camera.project(np.array([0.1, -0.05, 0.5]), K),
                               [160 + 300 * 0.2, 150 - 310 * 0.1])


def test_depth_to_points_lies_on_the_depth_surface():
    depth = np.full((4, 5), 0.5)
    depth[0, 0] = 0.0  # no measurement
    mask = np.ones((4, 5), bool)
    mask[3, 4] = False
    points = camera.depth_to_points(depth, K, mask)
    assert points.shape == (18, 3)
    np.testing.assert_allclose(points[:, 2], 0.5)
    uv = camera.project(points, K)
    np.testing.assert_allclose(uv, np.round(uv), atol=1e-9)


def test_depth_to_points_rejects_mismatched_mask():
    with pytest.raises(ValueError, match="mask shape"):
        camera.depth_to_points(np.ones((4, 5)), K, np.ones((5, 4), bool))


@pytest.mark.parametrize("center", [(160.0, 150.0), (300.0, 20.0), (0.0, 310.0)])
def test_view_correction_maps_centre_ray_to_z_and_is_a_rotation(center):
    R = rotation.view_correction_rotation(np.array(center), K)
    ray = np.linalg.solve(K, [center[0], center[1], 1.0])
    np.testing.assert_allclose(R @ (ray / np.linalg.norm(ray)), [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(R), 1.0)


def test_rotation_about_z_matches_2d_rotation():
    angle = 0.7
    R = rotation.rotation_about_z(angle)
    v = np.array([1.0, 0.0, 0.3])
    np.testing.assert_allclose(R @ v, [np.cos(angle), np.sin(angle), 0.3])
    np.testing.assert_allclose(rotation.rotation_2d(angle), R[:2, :2])


def test_rodrigues_quarter_turn():
    np.testing.assert_allclose(camera.rodrigues([0, 0, np.pi / 2]) @ [1, 0, 0], [0, 1, 0],
                               atol=1e-12)


def test_stb_to_rhd_maps_names():
    for rhd_index, stb_index in enumerate(skeleton.STB_TO_RHD):
        rhd_name = skeleton.JOINT_NAMES[rhd_index]
        stb_name = skeleton.STB_JOINT_NAMES[stb_index]
        if rhd_index == 0:
            assert stb_name == "palm"
            continue
        finger, part = rhd_name.split("_")
        assert stb_name.split("_")[0] == finger
        # RHD: tip, dip, pip, mcp; STB: mcp, pip, dip, tip (same four positions, reversed).
        assert ("tip", "dip", "pip", "mcp").index(part) == 3 - ("mcp", "pip", "dip", "tip").index(
            stb_name.split("_")[1])
    np.testing.assert_array_equal(skeleton.STB_TO_RHD[skeleton.RHD_TO_STB], np.arange(21))


def test_palm_to_wrist_and_back():
    rng = np.random.default_rng(1)
    hand = rng.standard_normal((3, 21, 3))
    wrist = skeleton.stb_palm_to_wrist(hand)
    ring = hand[:, 16]
    np.testing.assert_allclose(wrist[:, 0], ring + 2 * (hand[:, 0] - ring))
    np.testing.assert_allclose(wrist[:, 1:], hand[:, 1:])
    np.testing.assert_allclose(skeleton.wrist_to_stb_palm(wrist), hand)


def test_normalize_pose_round_trip_and_units():
    rng = np.random.default_rng(2)
    hand = rng.uniform(-0.1, 0.1, (4, 21, 3)) + [0, 0, 0.5]
    normalized, root, scale = skeleton.normalize_pose(hand)
    np.testing.assert_allclose(normalized[:, skeleton.ROOT_JOINT], 0.0)
    np.testing.assert_allclose(
        np.linalg.norm(normalized[:, 12] - normalized[:, 11], axis=-1), 1.0)
    np.testing.assert_allclose(skeleton.denormalize_pose(normalized, root, scale), hand)


def test_root_and_scale_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"\[..., 21, 3\]"):
        skeleton.root_and_scale(np.zeros((20, 3)))


def test_bones_form_a_tree_rooted_at_the_wrist():
    children = [c for _, c in skeleton.BONES]
    assert sorted(children) == list(range(1, 21))
