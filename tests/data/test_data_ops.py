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
    k = np.array([[80.0, 0, 31.5], [0, 80.0, 31.5], [0, 0, 1]])
    for _ in range(3):
        params = augment.sample_params(rng)
        matrix = augment.crop_transform(params, 64, 32, k, 48)
        out = crop.warp_affine(image, matrix, 48)
        np.testing.assert_allclose(_peak(out), crop.apply_affine(matrix, [20, 40]), atol=0.3)


def test_identity_and_resize():
    image = np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(crop.warp_affine(image, np.eye(3), 32), image)
    k = np.array([[40.0, 0, 3.0], [0, 40.0, 20.0], [0, 0, 1]])   # principal point anywhere
    np.testing.assert_allclose(augment.crop_transform(augment.IDENTITY, 32, 32, k, 16),
                               crop.resize_matrix(32, 16), atol=1e-12)
    # the central crop_side window of a larger stored image, resized
    np.testing.assert_allclose(augment.crop_transform(augment.IDENTITY, 64, 32, k, 16),
                               crop.resize_matrix(32, 16) @ crop.translation(-16, -16),
                               atol=1e-12)
    with pytest.raises(ValueError, match="uint8"):
        crop.warp_affine(image.astype(np.float32), np.eye(3), 32)


@pytest.mark.parametrize("principal_point", [(255.5, 255.5), (300.0, 140.0)])
def test_augmented_intrinsics_keep_2d_and_3d_consistent(principal_point):
    """Rotated points through the output K land on the warped keypoints, for view-corrected
    (centred principal point) and plain (off-centre) stored images alike."""
    k_image = np.array([[400.0, 0, principal_point[0]], [0, 400.0, principal_point[1]],
                        [0, 0, 1]])
    points = np.random.default_rng(2).normal(0, 0.03, (21, 3)) + [0, 0, 0.5]
    uv = camera.project(points, k_image)
    rng = np.random.default_rng(3)
    image = np.zeros((512, 512, 3), np.uint8)
    for _ in range(5):
        params = augment.sample_params(rng)
        assert 1.0 <= params.scale <= 1.2 and abs(params.angle) <= np.pi
        assert np.all(np.abs(params.shift) <= 20) and abs(params.hue) <= 0.1
        _, uv_out, rot, k_out = augment.augment(image, uv, k_image, 256.0, params, 64)
        np.testing.assert_allclose(rot, rotation.rotation_about_z(params.angle))
        np.testing.assert_allclose(camera.project(points @ rot.T, k_out), uv_out, atol=1e-6)
        np.testing.assert_allclose(k_out[[0, 1, 1], [1, 0, 2]] * [1, 1, 0], 0, atol=1e-9)
        np.testing.assert_allclose(k_out[0, 0], k_out[1, 1])


def _worst_cases():
    for zoom in augment.ZOOMS:
        for du in (-20.0, 20.0):
            for dv in (-20.0, 20.0):
                for angle in np.linspace(-np.pi, np.pi, 17):
                    yield zoom, augment.AugmentParams(1.2, (du, dv), float(angle), 0.0)


@pytest.mark.parametrize("principal_point", [(255.5, 255.5), (300.0, 140.0)])
def test_augmentation_never_samples_outside_the_stored_image(principal_point):
    """Scale 1.2, shift ±20 px and every 22.5° of rotation stay inside a 2×-context image."""
    k_image = np.array([[400.0, 0, principal_point[0]], [0, 400.0, principal_point[1]],
                        [0, 0, 1]])
    grey = np.full((512, 512, 3), 200, np.uint8)
    for zoom, params in _worst_cases():
        matrix = augment.crop_transform(params, 512, 256.0, k_image, 64, zoom)
        corners = augment.sample_positions(matrix, 64)
        assert corners.min() >= 0 and corners.max() <= 511, (zoom, params)
        radius = np.abs(corners - 255.5).max()
        assert radius <= augment.max_extent(256.0, zoom) + 1e-6
        out = augment.render(grey, matrix, 64)
        assert out.min() == 200, (zoom, params)          # no black fill anywhere
    # the old storage (the crop box is the whole image) does sample outside: black corners
    params = augment.AugmentParams(1.2, (20.0, 20.0), np.pi / 4, 0.0)
    old = augment.crop_transform(params, 256, 256.0, np.eye(3), 64)
    assert augment.render(grey[:256, :256], old, 64).min() == 0
    with pytest.raises(ValueError, match="augment_zoom"):
        augment.window_side(params, 256.0, "sideways")


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
