"""Crops, images and keypoint geometry of handvae.inference, checked against the builders."""

import ml_collections
import numpy as np
import pytest
from PIL import Image

from data_prep import features
from handvae.data import heatmaps as heatmaps_lib
from handvae.data import pipeline
from handvae.inference import geometry, images
from handvae.ops import camera, skeleton

K = np.array([[300.0, 0, 160], [0, 300.0, 160], [0, 0, 1]])


def _hand(offset=(0.08, -0.05, 0.5)):
    """A flat, spread hand (RHD order), metres, off the optical axis."""
    kp = np.zeros((21, 3))
    kp[0] = [0, 0.08, 0]
    for f in range(5):
        angle = np.deg2rad(-60 + 30 * f)
        direction = np.array([np.sin(angle), -np.cos(angle), 0.02 * f])
        for k in range(4):
            kp[4 * f + 4 - k] = kp[0] + direction * (0.06 + 0.025 * k)
    return kp - kp[skeleton.ROOT_JOINT] + offset


@pytest.mark.parametrize("hand_side", ["right", "left"])
def test_crop_and_geometry_match_the_builders_and_pipeline(hand_side):
    hand = _hand()
    uv = camera.project(hand, K)
    image = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    example = features.process_frame(key="t/0", image=image, K=K, keypoints_3d=hand,
                                     hand_points=np.repeat(hand, 2, 0), hand_uv=uv,
                                     mirror=hand_side == "left")
    size = 32
    data_config = ml_collections.ConfigDict(dict(image_size=size, num_points=8,
                                                 heatmap_size=8, heatmap_sigma=1.0))
    row = pipeline.example_to_features(dict(example), data_config, None, augment=False)
    box = (*uv.min(0), *uv.max(0))   # the tight box: the builders' square comes out of it
    crop = geometry.prepare_crop(image, box, K, size, hand_side=hand_side)

    np.testing.assert_array_equal(crop.rgb, row["rgb"])
    np.testing.assert_allclose(crop.view_rotation, example["view_rotation"], atol=1e-6)
    # Pose in the model's frame → camera frame, root-relative, bone units.
    normalized, _, _ = skeleton.normalize_pose(hand)
    np.testing.assert_allclose(row["pose"] @ crop.crop_to_camera, normalized, atol=1e-4)
    # 2-D keypoints of the model-size crop → the original image.
    uv_back = geometry.crop_to_image_points(row["keypoints_2d"][None], crop.crop_to_image[None])
    np.testing.assert_allclose(np.asarray(uv_back)[0], uv, atol=2e-3)
    # The crop camera projects the model-frame pose (at its root) onto the crop keypoints.
    projected = camera.project(row["pose"] * row["scale"] + row["root"], crop.crop_intrinsics)
    np.testing.assert_allclose(projected, row["keypoints_2d"], atol=2e-3)


def test_heatmap_keypoints_recover_the_targets():
    rng = np.random.default_rng(1)
    uv = rng.uniform(2, 29, (21, 2))
    maps = heatmaps_lib.keypoint_heatmaps(uv, 32, 16, 1.5)
    decoded = np.asarray(geometry.heatmap_keypoints(maps[None], 32))[0]
    assert decoded.shape == (21, 2)
    assert np.max(np.abs(decoded - uv)) < 0.6   # sub-pixel of a 16² map at 2 px per cell


def test_projected_keypoints_fill_the_tight_box_and_are_centred():
    pose, _, _ = skeleton.normalize_pose(_hand((0.0, 0.0, 0.5)))
    size = 32
    k_crop = np.array([[[200.0, 0, 15.5], [0, 200.0, 15.5], [0, 0, 1]]], np.float32)
    uv = np.asarray(geometry.projected_keypoints(pose[None].astype(np.float32), k_crop, size))[0]
    extent = uv.max(0) - uv.min(0)
    assert np.max(extent) == pytest.approx(size / geometry.view_crop.CROP_MARGIN, rel=0.15)
    np.testing.assert_allclose((uv.max(0) + uv.min(0)) / 2, [15.5, 15.5], atol=1.5)


def test_default_intrinsics_use_the_documented_field_of_view():
    K0 = geometry.default_intrinsics(240, 320)
    fov = 2 * np.degrees(np.arctan(160 / K0[0, 0]))
    assert fov == pytest.approx(geometry.DEFAULT_FOV_DEGREES)
    np.testing.assert_allclose(K0[:2, 2], [159.5, 119.5])
    assert geometry.default_intrinsics(240, 320, focal=500.0)[1, 1] == 500.0
    with pytest.raises(ValueError, match="focal"):
        geometry.default_intrinsics(240, 320, focal=-1.0)


@pytest.mark.parametrize("box, match", [
    ((10, 10, 10, 50), "zero area"), ((50, 10, 20, 40), "zero area"),
    ((400, 10, 500, 60), "outside"), ((-90, -90, -10, -10), "outside"),
    ((1, 2, 3), "four numbers"), ((0, 0, np.nan, 5), "non-finite")])
def test_bad_boxes_name_the_image_and_box(box, match):
    with pytest.raises(ValueError, match=match) as info:
        geometry.check_box(box, 240, 320, name="photo.png")
    assert "photo.png" in str(info.value)


def test_a_box_partly_outside_is_kept():
    assert geometry.check_box((-20, -20, 40, 40), 240, 320) == (-20, -20, 40, 40)


def test_images_are_converted_not_refused(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    gray16 = (np.arange(120, dtype=np.uint16).reshape(12, 10) * 500)
    Image.fromarray(rgb).convert("L").save(tmp_path / "gray.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(gray16).save(tmp_path / "gray16.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(rgb).save(tmp_path / "photo.jpg")
    for name, note in [("gray.png", "grayscale"), ("rgba.png", "alpha"),
                       ("gray16.png", "16-bit"), ("palette.png", "mode P"), ("photo.jpg", None)]:
        image, conversion = images.read_image(str(tmp_path / name))
        assert image.shape == (12, 10, 3) and image.dtype == np.uint8, name
        assert (conversion is None) if note is None else (note in conversion), (name, conversion)
    image, _ = images.read_image(str(tmp_path / "gray16.png"))
    np.testing.assert_array_equal(image[..., 0], np.round(gray16 * (255 / 65535)))
    np.testing.assert_array_equal(images.read_image(str(tmp_path / "rgba.png"))[0], rgb)
    assert images.to_rgb_uint8(rgb[..., 0] / 255.0)[0].shape == (12, 10, 3)


def test_unreadable_files_are_named(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    for name in ("notes.png", "cut.png", "missing.png"):
        with pytest.raises(images.ImageError, match=name):
            images.read_image(str(tmp_path / name))
    with pytest.raises(images.ImageError, match="float image"):
        images.to_rgb_uint8(np.full((4, 4), 3.0), "arr")
    with pytest.raises(images.ImageError, match="shape"):
        images.to_rgb_uint8(np.zeros((4, 4, 5), np.uint8), "arr")


def test_folders_are_listed_and_an_empty_one_is_an_error(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "empty").mkdir()
    for name in ("b.png", "a.JPG", "c.txt"):
        (tmp_path / "full" / name).write_bytes(b"")
    files, errors = images.list_images([str(tmp_path / "full"), str(tmp_path / "empty"),
                                        str(tmp_path / "nothing")])
    assert [p.rsplit("/", 1)[1] for p in files] == ["a.JPG", "b.png"]
    assert len(errors) == 2 and "empty" in errors[0][1] and "no PNG" in errors[0][1]
    assert "nothing" in errors[1][1]


def test_wide_integer_arrays_of_8_bit_values_are_read_as_8_bit(tmp_path):
    """Issue 24: int32/int64 arrays holding 0–255 were scaled as 16-bit (almost black)."""
    rgb = np.random.default_rng(5).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    for dtype in (np.int16, np.int32, np.int64, np.uint32):
        image, note = images.to_rgb_uint8(rgb.astype(dtype), "arr")
        np.testing.assert_array_equal(image, rgb, err_msg=dtype.__name__)
        assert "read as 8 bits" in note, note
    wide16 = rgb.astype(np.int64) * 257             # the same picture at 16 bits
    np.testing.assert_array_equal(images.to_rgb_uint8(wide16)[0], rgb)
    dark16 = rgb.astype(np.int64)                   # ambiguous: the caller says 16-bit
    assert images.to_rgb_uint8(dark16, bit_depth=16)[0].max() <= 1
    # A 16-bit PNG stays 16-bit even when all its values are ≤ 255.
    Image.fromarray(rgb[..., 0].astype(np.uint16)).save(tmp_path / "dark16.png")
    image, note = images.read_image(str(tmp_path / "dark16.png"))
    assert image.max() <= 1 and "16-bit" in note
    for bad, match in ((rgb.astype(np.int32) - 1, r"\[-1, "), (wide16 * 300, "65535")):
        with pytest.raises(images.ImageError, match=match) as info:
            images.to_rgb_uint8(bad, "arr.npy")
        assert "arr.npy" in str(info.value)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_of_photos_is_applied(tmp_path, orientation):
    """Issue 24: a phone photo's EXIF orientation was ignored (the hand lay on its side)."""
    stored = np.zeros((20, 30, 3), np.uint8)
    stored[:5, :5] = 255                            # a white corner in the stored pixels
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=100)
    image, note = images.read_image(str(path))
    upright = {3: np.rot90(stored, 2), 6: np.rot90(stored, -1), 8: np.rot90(stored, 1)}
    assert image.shape == upright[orientation].shape
    np.testing.assert_allclose(image.astype(float), upright[orientation], atol=40)
    assert f"EXIF orientation {orientation}" in note


def test_a_tiny_image_is_refused_and_a_far_box_warned():
    """Issue 24: a 1×1 image, or a box 60× the image, was predicted without a word."""
    K1 = geometry.default_intrinsics(1, 1)
    with pytest.raises(ValueError, match="1x1 pixels") as info:
        geometry.prepare_crop(np.zeros((1, 1, 3), np.uint8), None, K1, 32, name="dot.png")
    assert "dot.png" in str(info.value)
    image = np.zeros((48, 64, 3), np.uint8)
    K = geometry.default_intrinsics(48, 64)
    huge = geometry.prepare_crop(image, (0, 0, 60 * 64, 60 * 48), K, 32, name="far.png")
    (message,) = huge.warnings
    assert "far.png" in message and "64x48" in message and "inside" in message
    assert geometry.prepare_crop(image, (-10, -5, 40, 40), K, 32).warnings == ()


@pytest.mark.parametrize("focal", ["abc", [1, 2], float("nan"), 0])
def test_a_non_numeric_focal_names_the_image(focal):
    """Issue 24: ``"focal": "abc"`` raised a TypeError (``'>' not supported``)."""
    with pytest.raises(ValueError, match="focal must be a positive number") as info:
        geometry.default_intrinsics(240, 320, focal, name="photo.png")
    assert "photo.png" in str(info.value)
