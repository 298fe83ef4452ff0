"""The kinematic hand and the capsule renderer of data_prep.synthetic."""

import numpy as np
import pytest

from data_prep.synthetic import hand, render
from handvae.ops import camera, skeleton


def _shape(seed=0):
    return hand.sample_shape(np.random.default_rng(seed))


def test_forward_kinematics_keeps_bone_lengths_in_rhd_order():
    shape = _shape()
    angles = hand.sample_pose(np.random.default_rng(1), "random")
    keypoints = hand.forward_kinematics(shape, angles, "right")
    assert keypoints.shape == (21, 3)
    np.testing.assert_allclose(keypoints[0], 0.0)  # the wrist is the origin
    for finger in range(5):
        tip, dip, pip, mcp = keypoints[4 * finger + 1: 4 * finger + 5]
        np.testing.assert_allclose(mcp, shape.base_positions[finger], atol=1e-12)
        lengths = [np.linalg.norm(pip - mcp), np.linalg.norm(dip - pip),
                   np.linalg.norm(tip - dip)]
        np.testing.assert_allclose(lengths, shape.bone_lengths[finger], rtol=1e-9)
    # The middle finger's first bone is the project's scale bone (joints 12 → 11).
    _, scale = skeleton.root_and_scale(keypoints)
    np.testing.assert_allclose(scale, shape.bone_lengths[2, 0], rtol=1e-9)


def test_left_hand_is_the_mirror_of_the_right():
    shape = _shape()
    angles = hand.sample_pose(np.random.default_rng(2))
    right = hand.forward_kinematics(shape, angles, "right")
    left = hand.forward_kinematics(shape, angles, "left")
    np.testing.assert_allclose(left, right * [-1.0, 1.0, 1.0])
    # Right hand: the thumb lies on +x (radial side), the little finger on −x.
    assert right[4, 0] > 0 > right[20, 0]


@pytest.mark.parametrize("kind", hand.POSE_KINDS)
def test_pose_sampler_stays_within_limits(kind):
    rng = np.random.default_rng(3)
    for _ in range(50):
        angles = hand.sample_pose(rng, kind)
        assert np.all(angles >= hand.LIMITS_LOW - 1e-12)
        assert np.all(angles <= hand.LIMITS_HIGH + 1e-12)


def test_pose_kinds_differ_as_named():
    shape, rng = _shape(), np.random.default_rng(4)

    def tip_to_mcp(kind, finger):
        kp = hand.forward_kinematics(shape, hand.sample_pose(rng, kind))
        return np.linalg.norm(kp[4 * finger + 1] - kp[4 * finger + 4])

    open_index = np.mean([tip_to_mcp("open", 1) for _ in range(10)])
    fist_index = np.mean([tip_to_mcp("fist", 1) for _ in range(10)])
    point_index = np.mean([tip_to_mcp("point", 1) for _ in range(10)])
    point_middle = np.mean([tip_to_mcp("point", 2) for _ in range(10)])
    assert fist_index < 0.7 * open_index
    assert point_index > 1.4 * point_middle  # index straight, the others curled


def test_pinch_brings_thumb_and_index_tips_together():
    shape, rng = _shape(), np.random.default_rng(5)
    pinch = [hand.forward_kinematics(shape, hand.sample_pose(rng, "pinch", shape=shape))
             for _ in range(20)]
    open_ = [hand.forward_kinematics(shape, hand.sample_pose(rng, "open")) for _ in range(20)]
    gap = lambda kps: np.mean([np.linalg.norm(k[1] - k[5]) for k in kps])  # noqa: E731
    assert gap(pinch) < 0.4 * gap(open_)
    assert gap(pinch) < 0.03  # metres: the tips (nearly) meet


def test_random_orientation_is_a_rotation_facing_the_camera():
    rng = np.random.default_rng(6)
    for _ in range(20):
        r = hand.random_orientation(rng, back_facing_probability=0.0)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)
        palm_normal = r @ np.array([0.0, 0.0, 1.0])
        assert palm_normal[2] < 0.0  # the palm faces the camera (towards −z)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="side"):
        hand.forward_kinematics(_shape(), np.zeros((5, 4)), "middle")
    with pytest.raises(ValueError, match=r"\[5, 4\]"):
        hand.forward_kinematics(_shape(), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="kind"):
        hand.sample_pose(np.random.default_rng(0), "wave")


def test_ray_hits_sphere_and_capsule_at_the_analytic_distance():
    rays = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    sphere = render.intersect_capsule(rays, np.array([0, 0, 1.0]), np.array([0, 0, 1.0]), 0.1)
    np.testing.assert_allclose(sphere, [0.9, np.inf])
    # A horizontal capsule across the view at z = 0.5: the central ray meets its side.
    side = render.intersect_capsule(rays[:1], np.array([-0.2, 0, 0.5]),
                                    np.array([0.2, 0, 0.5]), 0.02)
    np.testing.assert_allclose(side, [0.48])
    # Looking down the axis of a capsule pointing away: its near cap is hit.
    cap = render.intersect_capsule(rays[:1], np.array([0, 0, 0.5]), np.array([0, 0, 0.7]),
                                   0.02)
    np.testing.assert_allclose(cap, [0.48])


def test_rendered_points_lie_on_the_capsule_surfaces():
    K = np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]])
    caps = render.Capsules(start=np.array([[-0.05, -0.02, 0.5], [0.0, 0.03, 0.45]]),
                           end=np.array([[0.05, 0.01, 0.55], [0.02, -0.04, 0.5]]),
                           radius=np.array([0.015, 0.01]), part_id=np.array([3, 7]),
                           albedo=np.ones((2, 3)))
    out = render.render_capsules(caps, K, (48, 64))
    assert set(np.unique(out.part_id)) == {render.NO_PART, 3, 7}
    for c in range(2):
        points = camera.depth_to_points(out.depth, K, mask=out.part_id == caps.part_id[c])
        a, b = caps.start[c], caps.end[c]
        s = np.clip((points - a) @ (b - a) / ((b - a) @ (b - a)), 0, 1)
        distance = np.linalg.norm(points - (a + s[:, None] * (b - a)), axis=-1)
        np.testing.assert_allclose(distance, caps.radius[c], atol=1e-9)
    # The per-capsule bounding boxes lose nothing: brute force over every pixel agrees.
    rays = render.ray_directions(K, (48, 64))
    full = np.minimum(*[render.intersect_capsule(rays, caps.start[c], caps.end[c],
                                                 caps.radius[c]) for c in range(2)])
    np.testing.assert_allclose(out.distance, full)
    np.testing.assert_allclose(np.linalg.norm(out.normal[out.part_id >= 0], axis=-1), 1.0)


def test_slab_faces_are_hit_inside_the_polygon_only():
    K = np.array([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]])
    square = np.array([[-0.05, -0.05, 0.5], [0.05, -0.05, 0.5], [0.05, 0.05, 0.5],
                       [-0.05, 0.05, 0.5], [0.0, 0.0, 0.5]])  # the centre is not a vertex
    slab = render.make_slab(square, np.array([0.0, 0.0, -1.0]), 0.01, 15, np.ones(3))
    assert len(slab.polygon) == 4
    out = render.render_capsules(render.Capsules(np.zeros((0, 3)), np.zeros((0, 3)),
                                                 np.zeros(0), np.zeros(0, int),
                                                 np.zeros((0, 3))),
                                 K, (64, 64), slabs=(slab,))
    # The near face is at z = 0.49, facing the camera; the square spans ±10 px around (32, 32).
    np.testing.assert_allclose(out.depth[32, 32], 0.49)
    np.testing.assert_allclose(out.normal[32, 32], [0.0, 0.0, -1.0])
    assert out.part_id[32, 32] == 15 and out.part_id[32, 44] == render.NO_PART
    # The near face spans ±0.05 m at z = 0.49: |u − 32| ≤ 10.2 px, 21 columns and rows.
    assert np.sum(out.part_id == 15) == 21 * 21
    moved = render.transform(slab, np.eye(3), np.array([0.0, 0.0, 0.5]))
    np.testing.assert_allclose(render.intersect_slab(np.array([0.0, 0.0, 1.0]), moved)[0],
                               0.99)
