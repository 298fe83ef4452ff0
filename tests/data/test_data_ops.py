"""handvae.data crop / augment / heat maps / cloud helpers."""

import numpy as np
import pytest

from handvae.data import augment, cloud, heatmaps
from handvae.ops import image_warp as crop
from handvae.ops import camera, rotation


def _dot_image(size, u, v):
    image = np.zeros((size, size, 3), np.uint8)
    image[v - 1:v + 2, u - 1:u + 2] = 255
    return image


def _peak(image):
    weights = image.astype(np.float64).sum(-1)
    v, u = np.mgrid[:image.shape[0], :image.shape[1]]
    return np.array([(weights * u).sum(), (weights * v).sum()]) / weights.sum()


def test_warp_affine_moves_a_dot_where_apply_affine_says():
    image = _dot_image(64, 20, 40)
    rng = np.random.default_rng(0)
    for _ in range(3):
        params = augment.sample_params(rng, 48)
        matrix = augment.crop_transform(params, 64, 48)
        out = crop.warp_affine(image, matrix, 48)
        np.testing.assert_allclose(_peak(out), crop.apply_affine(matrix, [20, 40]), atol=0.3)


def test_identity_and_resize():
    image = np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(crop.warp_affine(image, np.eye(3), 32), image)
    np.testing.assert_allclose(augment.crop_transform(augment.IDENTITY, 32, 16),
                               crop.resize_matrix(32, 16))
    with pytest.raises(ValueError, match="uint8"):
        crop.warp_affine(image.astype(np.float32), np.eye(3), 32)


def test_augmented_intrinsics_keep_2d_and_3d_consistent():
    k_crop = np.array([[400.0, 0, 127.5], [0, 400.0, 127.5], [0, 0, 1]])
    points = np.random.default_rng(2).normal(0, 0.03, (21, 3)) + [0, 0, 0.5]
    uv = camera.project(points, k_crop)
    rng = np.random.default_rng(3)
    for _ in range(5):
        params = augment.sample_params(rng, 64)
        assert 1.0 <= params.scale <= 1.2 and abs(params.angle) <= np.pi
        assert np.all(np.abs(params.shift) <= 20 * 64 / 256) and abs(params.hue) <= 0.1
        image = np.zeros((256, 256, 3), np.uint8)
        _, uv_out, rot, k_out = augment.augment(image, uv, k_crop, params, 64)
        np.testing.assert_allclose(rot, rotation.rotation_about_z(params.angle))
        np.testing.assert_allclose(camera.project(points @ rot.T, k_out), uv_out, atol=1e-6)
        np.testing.assert_allclose(k_out[[0, 1, 1], [1, 0, 2]] * [1, 1, 0], 0, atol=1e-9)


def test_hue_shift_keeps_greys_and_turns_colours():
    image = np.zeros((4, 4, 3), np.uint8)
    image[:2] = 128                 # grey: no hue
    image[2:] = [200, 40, 40]       # red
    out = augment.adjust_hue(image, 0.1)
    np.testing.assert_array_equal(out[:2], image[:2])
    assert out[2, 0, 1] > image[2, 0, 1] + 30    # red turns towards yellow
    np.testing.assert_array_equal(augment.adjust_hue(image, 0.0), image)


def test_heatmap_peaks_at_the_keypoint():
    keypoints = np.array([[10.0, 20.0], [63.0, 0.0], [-30.0, 5.0]])
    maps = heatmaps.keypoint_heatmaps(keypoints, 64, 64, 2.0)
    assert maps.shape == (64, 64, 3) and maps.dtype == np.float32
    v, u = np.unravel_index(np.argmax(maps[..., 0]), (64, 64))
    assert (u, v) == (10, 20) and maps[20, 10, 0] == pytest.approx(1.0)
    assert maps[..., 2].max() < 1e-6          # far outside: empty map
    small = heatmaps.keypoint_heatmaps(keypoints[:1], 64, 16, 1.0)
    v, u = np.unravel_index(np.argmax(small[..., 0]), (16, 16))
    assert (u, v) == (2, 5)                   # (10.5 / 4 − 0.5, 20.5 / 4 − 0.5) ≈ (2.1, 4.6)
    with pytest.raises(ValueError, match="keypoints_2d"):
        heatmaps.keypoint_heatmaps(np.zeros((3, 3)), 64, 16, 1.0)


def test_cloud_sampling_flags_resampling():
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(100, 3))
    sample, resampled = cloud.sample_cloud(pool, 64, rng)
    assert sample.shape == (64, 3) and not resampled
    assert len(np.unique(sample, axis=0)) == 64
    sample, resampled = cloud.sample_cloud(pool[:10], 64, rng)
    assert sample.shape == (64, 3) and resampled
    with pytest.raises(ValueError, match="points"):
        cloud.sample_cloud(np.zeros((0, 3)), 8, rng)
