"""data_prep.features: view-corrected crops, keypoints, point pools, skipped frames."""

import numpy as np
import pytest

from data_prep import features
from handvae.ops import camera, image_warp, rotation, skeleton

K = np.array([[300.0, 0, 160], [0, 300.0, 160], [0, 0, 1]])


def _hand(offset=(0.1, -0.05, 0.5)):
    """A flat, spread hand (RHD order), metres, off the optical axis."""
    kp = np.zeros((21, 3))
    kp[0] = [0, 0.08, 0]
    for f in range(5):
        angle = np.deg2rad(-60 + 30 * f)
        direction = np.array([np.sin(angle), -np.cos(angle), 0.0])
        for k in range(4):
            kp[4 * f + 4 - k] = kp[0] + direction * (0.06 + 0.025 * k)
    return kp - kp[skeleton.ROOT_JOINT] + offset


def _frame(hand):
    uv = camera.project(hand, K)
    image = np.zeros((320, 320, 3), np.uint8)
    # one bright 3x3 dot at the index tip (joint 5)
    u, v = np.round(uv[5]).astype(int)
    image[v - 1:v + 2, u - 1:u + 2] = 255
    points = hand + np.random.default_rng(0).normal(0, 0.003, hand.shape)
    dense = np.concatenate([points + 0.001 * k for k in range(3)])
    return image, dense, uv


@pytest.mark.parametrize("mirror", [False, True])
def test_crop_keypoints_and_image_agree(mirror):
    hand = _hand()
    image, points, uv = _frame(hand)
    ex = features.process_frame(key="t/0", image=image, K=K, keypoints_3d=hand,
                                hand_points=points, hand_uv=uv, mirror=mirror, context_size=128)
    # the dot is drawn where the stored 2-D keypoint says
    v, u = np.unravel_index(np.argmax(ex["image"].sum(-1)), ex["image"].shape[:2])
    assert np.hypot(u - ex["keypoints_2d"][5, 0], v - ex["keypoints_2d"][5, 1]) < 2.0
    # keypoints_2d = projection of the stored pose through K_image
    metric = ex["keypoints_3d"] * ex["scale"] + ex["root"]
    np.testing.assert_allclose(camera.project(metric, ex["K_image"]), ex["keypoints_2d"],
                               atol=1e-3)
    # the hand's crop box is the central crop_side window of the stored image
    assert ex["crop_side"] == 64
    assert (np.abs(ex["keypoints_2d"] - 63.5) <= 32).all()
    np.testing.assert_allclose(ex["keypoints_3d"][skeleton.ROOT_JOINT], 0.0, atol=1e-7)
    np.testing.assert_allclose(ex["scale"], 0.025, rtol=1e-5)
    assert ex["K_image"][0, 2] == ex["K_image"][1, 2] == 63.5


def test_view_correction_centres_the_box_ray_and_keeps_distances():
    hand = _hand()
    image, points, uv = _frame(hand)
    centre, _ = features.crop_box(uv, uv)
    ex = features.process_frame(key="t/0", image=image, K=K, keypoints_3d=hand,
                                hand_points=points, hand_uv=uv)
    r = ex["view_rotation"].astype(np.float64)
    ray = np.linalg.solve(K, [centre[0], centre[1], 1.0])
    np.testing.assert_allclose(r @ ray / np.linalg.norm(ray), [0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-6)
    metric = ex["keypoints_3d"] * ex["scale"] + ex["root"]
    pairwise = lambda x: np.linalg.norm(x[:, None] - x[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(pairwise(metric), pairwise(hand), atol=1e-6)
    # the point pool is normalised like the keypoints
    np.testing.assert_allclose((ex["points"] * ex["scale"] + ex["root"]) @ r, points, atol=1e-6)


def test_point_pool_is_capped_and_deterministic():
    hand = _hand()
    image, _, uv = _frame(hand)
    many = np.repeat(hand, 300, axis=0)
    kwargs = dict(key="t/1", image=image, K=K, keypoints_3d=hand, hand_uv=uv, max_points=500)
    a = features.process_frame(hand_points=many, **kwargs)
    b = features.process_frame(hand_points=many, **kwargs)
    assert len(a["points"]) == 500
    np.testing.assert_array_equal(a["points"], b["points"])


def test_bad_frames_raise_skip_frame():
    hand = _hand()
    image, points, uv = _frame(hand)
    with pytest.raises(features.SkipFrame, match="hand depth points"):
        features.process_frame(key="t/2", image=image, K=K, keypoints_3d=hand,
                                hand_points=points[:10], hand_uv=uv)
    outside = hand + [1.0, 0, 0]
    with pytest.raises(features.SkipFrame, match="outside"):
        features.process_frame(key="t/3", image=image, K=K, keypoints_3d=outside,
                               hand_points=points, hand_uv=uv)


def test_warp_perspective_identity_and_shift():
    image = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    np.testing.assert_array_equal(image_warp.warp_perspective(image, np.eye(3), 40), image)
    shift = np.array([[1.0, 0, 3], [0, 1, 5], [0, 0, 1]])   # output (u, v) ← source (u+3, v+5)
    out = image_warp.warp_perspective(image, shift, 30)
    np.testing.assert_array_equal(out, image[5:35, 3:33])


def test_points_near_skeleton():
    hand = _hand((0, 0, 0.5))
    bone_mid = (hand[12] + hand[11]) / 2
    far = hand[12] + [0, 0, 0.05]
    near = features.points_near_skeleton(np.stack([bone_mid + [0, 0, 0.01], far]), hand, 0.02)
    assert near.tolist() == [True, False]
    assert rotation.view_correction_rotation(np.array([160.0, 160.0]), K).shape == (3, 3)


def test_hand_cut_by_the_border_is_kept_with_cut_keypoints_invisible():
    hand = _hand()
    image, points, uv = _frame(hand)
    # Move the hand so the thumb tip (joint 1) leaves the image on the left but little else.
    shift_px = uv[1, 0] + 3.0
    moved = hand - [shift_px * hand[1, 2] / K[0, 0], 0, 0]
    moved_uv = camera.project(moved, K)
    outside = (moved_uv[:, 0] < -0.5)
    assert 0 < outside.sum() <= 10
    ex = features.process_frame(key="t/4", image=image, K=K, keypoints_3d=moved,
                                hand_points=points - (hand - moved)[0], hand_uv=moved_uv)
    np.testing.assert_array_equal(ex["visible"], (~outside).astype(np.float32))


def test_plain_crop_keeps_the_camera_frame():
    """view_correction=False: no rotation, K_image = scaling ∘ K, same normalisation."""
    hand = _hand()
    image, points, uv = _frame(hand)
    for mirror in (False, True):
        ex = features.process_frame(key="t/5", image=image, K=K, keypoints_3d=hand,
                                    hand_points=points, hand_uv=uv, context_size=128,
                                    view_correction=False, mirror=mirror)
        np.testing.assert_array_equal(ex["view_rotation"], np.eye(3))
        flip = np.array([-1.0, 1, 1]) if mirror else np.ones(3)
        metric = ex["keypoints_3d"] * ex["scale"] + ex["root"]
        np.testing.assert_allclose(metric * flip, hand, atol=1e-6)
        np.testing.assert_allclose(camera.project(metric, ex["K_image"]), ex["keypoints_2d"],
                                   atol=1e-3)
        expected_uv = uv.copy()
        centre, side = features.crop_box(uv, uv)
        expected_uv = (uv - centre) * 128 / (2 * side) + 63.5
        if mirror:
            expected_uv[:, 0] = 127 - expected_uv[:, 0]
        np.testing.assert_allclose(ex["keypoints_2d"], expected_uv, atol=1e-3)
        v, u = np.unravel_index(np.argmax(ex["image"].sum(-1)), ex["image"].shape[:2])
        assert np.hypot(u - ex["keypoints_2d"][5, 0], v - ex["keypoints_2d"][5, 1]) < 2.0


def test_test_frames_are_never_skipped_for_image_or_depth_reasons():
    hand = _hand()
    image, points, uv = _frame(hand)
    few = features.process_frame(key="t/6", image=image, K=K, keypoints_3d=hand,
                                 hand_points=points[:10], hand_uv=uv, strict=False)
    assert few["points"].shape == (0, 3)
    outside = hand + [1.0, 0, 0]
    far = features.process_frame(key="t/7", image=image, K=K, keypoints_3d=outside,
                                 hand_points=points, hand_uv=np.zeros((0, 2)), strict=False)
    assert far["visible"].sum() == 0 and far["image"].shape == (512, 512, 3)


def test_non_finite_annotations_are_skipped_with_their_reason():
    hand = _hand()
    image, points, uv = _frame(hand)
    bad = hand.copy()
    bad[3, 1] = np.nan
    with pytest.raises(features.SkipFrame) as info:
        features.process_frame(key="t/8", image=image, K=K, keypoints_3d=bad,
                               hand_points=points, hand_uv=uv, strict=False)
    assert info.value.reason == "non-finite keypoints"
    visible = np.ones(21)
    visible[4] = np.nan
    with pytest.raises(features.SkipFrame, match="visibility"):
        features.process_frame(key="t/9", image=image, K=K, keypoints_3d=hand,
                               hand_points=points, hand_uv=uv, visible=visible)


def test_stored_encoding_round_trips_through_decode_example():
    from handvae.data import source

    hand = _hand()
    image, points, uv = _frame(hand)
    ex = features.process_frame(key="t/10", image=image, K=K, keypoints_3d=hand,
                                hand_points=points, hand_uv=uv, context_size=128)
    ex.update(side=np.int32(1), frame="t/10")
    stored = features.to_stored(ex)
    assert isinstance(stored["image"], bytes) and stored["points"].dtype == np.float16
    decoded = source.decode_example(stored)
    assert decoded["image"].shape == (128, 128, 3) and decoded["image"].dtype == np.uint8
    assert np.abs(decoded["image"].astype(int) - ex["image"]).mean() < 2.0     # JPEG q90
    np.testing.assert_allclose(decoded["points"], ex["points"], atol=0.01)     # float16
    assert decoded["points"].dtype == np.float32 and decoded["frame"] == "t/10"


def test_validation_keys_are_a_fixed_share():
    keys = [f"training/{i:05d}" for i in range(400)]
    held = features.validation_keys(keys, 0.05)
    assert len(held) == 20 and held == features.validation_keys(keys[::-1], 0.05)
    assert features.validation_keys(keys[:1], 0.05) == set()
    assert len(features.validation_keys(keys[:3], 0.05)) == 1
    with pytest.raises(ValueError, match="share"):
        features.validation_keys(keys, 1.0)
