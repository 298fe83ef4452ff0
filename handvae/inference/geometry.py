"""Crop preparation (numpy) and the geometry that maps model outputs back to the image (JAX).

The crop is made exactly as the TFDS builders make training crops (``data_prep.features.
process_frame``) and the pipeline feeds them (``handvae.data.pipeline.example_to_features``
without augmentation):

1. the box (x0, y0, x1, y1) gives a square of side ``CROP_MARGIN · max(w, h)`` around its
   centre (:func:`handvae.ops.view_crop.crop_box`); without a box the whole image is the
   square (no margin);
2. view correction: R turns the ray through the box centre onto the optical axis; the stored
   image (``STORED_CONTEXT_SIZE``² = 512², a window twice the box, the builders' storage) is
   rendered through ``K · Rᵀ · K_stored⁻¹``; a left hand is mirrored (u → C−1−u);
3. the pipeline's preparation (box filter by an integer factor) and identity "augmentation"
   render the box at the model's ``image_size`` and normalise ``(x/255 − RGB_MEAN) / RGB_STD``
   (the builders' JPEG encoding is the only step not repeated).

Each crop carries three matrices, so one jitted function turns model outputs into the image
and camera frames (:func:`outputs_to_image`): ``crop_intrinsics`` K_S of the model-size crop,
``crop_to_camera`` (3-D, mirrored view-corrected frame → camera frame: ``x ↦ x · M`` with
``M = diag(±1, 1, 1) · R``) and ``crop_to_image`` (homogeneous crop pixel → image pixel).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from handvae.data import augment as augment_lib
from handvae.data import prepared as prepared_lib
from handvae.data import spec
from handvae.ops import image_warp, rotation, view_crop

STORED_CROP_SIZE = 256       # the crop box's side in the builders' stored image, pixels
STORED_CONTEXT_SIZE = 512    # the builders' stored image: a window 2× the crop box
DEFAULT_FOV_DEGREES = 55.0   # across the longer image side, when the intrinsics are unknown
HAND_SIDES = ("right", "left")
MIN_IMAGE_SIDE = 16          # pixels: a smaller image cannot show a hand; refused
MIN_BOX_INSIDE = 0.5         # share of the box's area inside the image below which we warn
_RGB_SCALE = (1 / (255 * spec.RGB_STD)).astype(np.float32)
_RGB_OFFSET = (spec.RGB_MEAN / spec.RGB_STD).astype(np.float32)


def default_intrinsics(height: int, width: int, focal: float | None = None, *,
                       name: str = "image") -> np.ndarray:
    """[3, 3] intrinsics for an image whose camera is unknown.

    The focal length is ``focal`` when given, else ``max(H, W) / (2 tan(fov/2))`` with
    fov = ``DEFAULT_FOV_DEGREES`` (55°: RHD's cameras see 55–63° across 320 px, STB's 55.5°
    across 640 px); the principal point is the image centre ``((W − 1)/2, (H − 1)/2)``.

    Raises:
      ValueError: ``focal`` is not a positive finite number (the message names ``name``).
    """
    if focal is None:
        focal = max(height, width) / (2 * math.tan(math.radians(DEFAULT_FOV_DEGREES) / 2))
    try:
        value = float(focal)
    except (TypeError, ValueError):
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name}: focal must be a positive number of pixels, got {focal!r}")
    focal = value
    return np.array([[focal, 0.0, (width - 1) / 2], [0.0, focal, (height - 1) / 2],
                     [0.0, 0.0, 1.0]])


def check_box(box: Sequence[float] | None, height: int, width: int, name: str = "image"
              ) -> tuple[float, float, float, float]:
    """Validates a hand box (x0, y0, x1, y1) in pixels; None → the whole image.

    Pixel centres are at integer coordinates, so the whole image is
    (−0.5, −0.5, W − 0.5, H − 0.5).

    Raises:
      ValueError: not four finite numbers, zero or negative area, or no overlap with the image
        (the message names ``name`` and the box).
    """
    if box is None:
        return (-0.5, -0.5, width - 0.5, height - 0.5)
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: box must be four numbers x0,y0,x1,y1 (pixels), got "
                         f"{box!r}") from None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise ValueError(f"{name}: box {box!r} has a non-finite coordinate")
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"{name}: box {[x0, y0, x1, y1]} has zero area (need x1 > x0 and "
                         "y1 > y0)")
    if x1 <= -0.5 or y1 <= -0.5 or x0 >= width - 0.5 or y0 >= height - 0.5:
        raise ValueError(f"{name}: box {[x0, y0, x1, y1]} lies outside the {width}x{height} "
                         "image")
    return (x0, y0, x1, y1)


def box_warnings(box: tuple[float, float, float, float], height: int, width: int,
                 name: str = "image") -> tuple[str, ...]:
    """Why a valid box (from :func:`check_box`) may give a poor prediction, one line each.

    A box mostly outside the image (less than ``MIN_BOX_INSIDE`` of its area inside, e.g. one
    60× the image) gives a crop that is mostly zero padding around a tiny image.
    """
    x0, y0, x1, y1 = box
    inside = ((min(x1, width - 0.5) - max(x0, -0.5)) * (min(y1, height - 0.5) - max(y0, -0.5))
              / ((x1 - x0) * (y1 - y0)))
    if inside >= MIN_BOX_INSIDE:
        return ()
    return (f"{name}: only {100 * inside:.2g}% of box {[round(v, 1) for v in box]} lies inside "
            f"the {width}x{height} image (the crop is mostly padding); check the box's units "
            "(pixels) and which image it belongs to",)


@dataclasses.dataclass(frozen=True)
class Crop:
    """One prepared crop and its geometry.

    Attributes:
      rgb: [S, S, 3] float32 normalised crop (the model's input).
      crop_intrinsics: [3, 3] K_S of the S² crop.
      crop_to_camera: [3, 3] M with ``x_camera = x_crop_frame @ M`` (un-mirrors, un-rotates).
      crop_to_image: [3, 3] homography, S² crop pixels (u, v, 1) → image pixels.
      center: [2] crop-square centre, image pixels.
      side: crop-square side, image pixels.
      box: (x0, y0, x1, y1) used (the whole image when none was given).
      K: [3, 3] intrinsics of the image.
      hand_side: "right" or "left".
      view_rotation: [3, 3] R, camera frame → view-corrected frame.
      warnings: one line per reason the prediction may be poor (:func:`box_warnings`).
    """

    rgb: np.ndarray
    crop_intrinsics: np.ndarray
    crop_to_camera: np.ndarray
    crop_to_image: np.ndarray
    center: np.ndarray
    side: float
    box: tuple[float, float, float, float]
    K: np.ndarray
    hand_side: str
    view_rotation: np.ndarray
    warnings: tuple[str, ...] = ()


def prepare_crop(image: np.ndarray, box: Sequence[float] | None, K: np.ndarray, image_size: int,
                 *, hand_side: str = "right", name: str = "image",
                 margin: float = view_crop.CROP_MARGIN) -> Crop:
    """The model input for one hand, made as the builders and the pipeline make it.

    Args:
      image: [H, W, 3] uint8 RGB.
      box: (x0, y0, x1, y1) tight hand box in pixels, or None for the whole image.
      K: [3, 3] intrinsics of ``image``, pixels.
      image_size: S, the model's crop side.
      hand_side: "right" or "left" (a left hand is mirrored as in training).
      name: the image's name for error messages.
      margin: crop side / box side (the builders' 1.3); ignored without a box.

    Raises:
      ValueError: an image with a side under ``MIN_IMAGE_SIDE`` pixels, or a bad side, K or
        box (the message names ``name``). A box mostly outside the image is kept, with a
        warning in ``Crop.warnings``.
    """
    height, width = image.shape[:2]
    if min(height, width) < MIN_IMAGE_SIDE:
        raise ValueError(f"{name}: the image is {width}x{height} pixels, too small to show a "
                         f"hand (at least {MIN_IMAGE_SIDE} pixels a side)")
    if hand_side not in HAND_SIDES:
        raise ValueError(f"{name}: hand_side must be one of {HAND_SIDES}, got {hand_side!r}")
    try:
        K = np.asarray(K, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: K must be a [3, 3] intrinsics matrix of numbers (pixels), "
                         f"got {K!r}") from None
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"{name}: K must be a [3, 3] intrinsics matrix with positive focal "
                         f"lengths, got {K.tolist()}")
    x0, y0, x1, y1 = check_box(box, height, width, name)
    warnings = box_warnings((x0, y0, x1, y1), height, width, name)
    corners = np.array([[x0, y0], [x1, y1]])
    center, side = view_crop.crop_box(corners, np.zeros((0, 2)),
                                      margin=1.0 if box is None else margin)
    view_rotation = rotation.view_correction_rotation(center, K)
    # As the builders store it (a window 2× the box at 512 px) and the pipeline reads it (box
    # filter by the integer factor k, then one warp of the box to S px).
    context = STORED_CONTEXT_SIZE / STORED_CROP_SIZE
    k_stored = view_crop.crop_intrinsics(K, context * side, STORED_CONTEXT_SIZE)
    stored = image_warp.warp_perspective(
        image, view_crop.crop_homography(K, view_rotation, k_stored), STORED_CONTEXT_SIZE)
    mirror = hand_side == "left"
    if mirror:
        stored = stored[:, ::-1]
    prepared = prepared_lib.prepare(
        {"image": stored, "K_image": k_stored, "crop_side": STORED_CROP_SIZE,
         "keypoints_2d": np.zeros((0, 2)), "keypoints_3d": np.zeros((0, 3)),
         "visible": np.zeros(0), "root": np.zeros(3), "scale": 1.0, "points": np.zeros((0, 3))},
        image_size)
    crop, _, _, _ = augment_lib.augment(prepared["image"], np.zeros((0, 2)),
                                        prepared["K_image"], prepared["crop_side"],
                                        augment_lib.IDENTITY, image_size)
    rgb = crop.astype(np.float32) * _RGB_SCALE - _RGB_OFFSET
    k_model = view_crop.crop_intrinsics(K, side, image_size)
    flip = np.diag([-1.0 if mirror else 1.0, 1.0, 1.0])
    unmirror = np.eye(3)
    if mirror:
        unmirror = np.array([[-1.0, 0.0, image_size - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return Crop(rgb=rgb, crop_intrinsics=k_model.astype(np.float32),
                crop_to_camera=(flip @ view_rotation).astype(np.float32),
                crop_to_image=(view_crop.crop_homography(K, view_rotation, k_model)
                               @ unmirror).astype(np.float32),
                center=center, side=float(side), box=(x0, y0, x1, y1), K=K,
                hand_side=hand_side, view_rotation=view_rotation, warnings=warnings)


def crop_outline(crop: Crop) -> np.ndarray:
    """[4, 2] image pixels of the model crop's corners (the region the model sees).

    The S² crop's outer corners (−0.5 and S − 0.5 in crop pixels) through ``crop_to_image``:
    a quadrilateral, slightly skewed by the view correction away from the optical axis.
    """
    size = crop.rgb.shape[0]
    lo, hi = -0.5, size - 0.5
    corners = np.array([[lo, lo, 1.0], [hi, lo, 1.0], [hi, hi, 1.0], [lo, hi, 1.0]])
    xyw = corners @ np.asarray(crop.crop_to_image, np.float64).T
    return xyw[:, :2] / xyw[:, 2:3]


# -- JAX: model outputs → image and camera frames ----------------------------------------------
def heatmap_keypoints(heatmaps: jnp.ndarray, image_size: int) -> jnp.ndarray:
    """Keypoints from heat maps, in crop pixels.

    The arg-max pixel refined by the centroid of its 3×3 neighbourhood (weights: heat minus the
    neighbourhood's minimum),
    then mapped from heat-map to crop pixels by the inverse of the training targets' map
    (``handvae.data.heatmaps``: ``h = (u + 0.5) · Hm/S − 0.5``).

    Args:
      heatmaps: [B, Hm, Hm, J].
      image_size: S, crop side in pixels.

    Returns:
      [B, J, 2] (u, v) crop pixels.
    """
    b, hm, _, j = heatmaps.shape
    flat = jnp.moveaxis(heatmaps, -1, 1).reshape(b, j, hm * hm)
    index = jnp.argmax(flat, axis=-1)
    v0, u0 = index // hm, index % hm                                   # [B, J]
    dv, du = (x.reshape(-1) for x in jnp.meshgrid(jnp.arange(-1, 2), jnp.arange(-1, 2),
                                                     indexing="ij"))  # [9] each
    vs, us = v0[..., None] + dv, u0[..., None] + du                    # [B, J, 9]
    inside = (vs >= 0) & (vs < hm) & (us >= 0) & (us < hm)
    patch = jnp.take_along_axis(flat, jnp.clip(vs, 0, hm - 1) * hm + jnp.clip(us, 0, hm - 1),
                                axis=-1)
    lowest = jnp.min(jnp.where(inside, patch, jnp.inf), axis=-1, keepdims=True)
    weight = jnp.where(inside, patch - lowest, 0.0)
    total = jnp.sum(weight, axis=-1)
    safe = jnp.where(total > 0, total, 1.0)
    du = jnp.where(total > 0, jnp.sum(weight * du, axis=-1) / safe, 0.0)
    dv = jnp.where(total > 0, jnp.sum(weight * dv, axis=-1) / safe, 0.0)
    uv_hm = jnp.stack([u0 + du, v0 + dv], axis=-1)
    return (uv_hm + 0.5) * (image_size / hm) - 0.5


def projected_keypoints(pose: jnp.ndarray, crop_intrinsics: jnp.ndarray, image_size: int,
                        margin: float = view_crop.CROP_MARGIN) -> jnp.ndarray:
    """The normalised 3-D pose projected into the crop, for strategies without heat maps.

    A root-relative pose in bone units has no depth, so one is assumed: the hand's x–y extent
    ``e`` (bone units) is taken to fill the tight box, ``S / margin`` crop pixels, as the
    builders' crops do (side = margin · hand extent); so the root lies at depth
    ``Z = f_S · e / (S / margin)`` bone units, shifted in x and y so that the hand's x–y
    bounding box is centred on the optical axis (the crop centre). Then a pinhole projection.

    Args:
      pose: [B, J, 3] root-relative pose in bone units, (mirrored) view-corrected frame.
      crop_intrinsics: [B, 3, 3] K_S.
      image_size: S.

    Returns:
      [B, J, 2] (u, v) crop pixels.
    """
    lo, hi = jnp.min(pose[..., :2], axis=1), jnp.max(pose[..., :2], axis=1)   # [B, 2]
    extent = jnp.maximum(jnp.max(hi - lo, axis=-1), 1e-3)                     # [B]
    focal = crop_intrinsics[:, 0, 0]
    depth = focal * extent * margin / image_size
    root = jnp.concatenate([-(lo + hi) / 2, depth[:, None]], axis=-1)          # [B, 3]
    points = pose + root[:, None, :]
    uvw = jnp.einsum("bjk,bik->bji", points, crop_intrinsics)
    return uvw[..., :2] / uvw[..., 2:3]


def crop_to_image_points(uv: jnp.ndarray, crop_to_image: jnp.ndarray) -> jnp.ndarray:
    """[B, J, 2] crop pixels → image pixels through the [B, 3, 3] homographies."""
    ones = jnp.ones(uv.shape[:-1] + (1,), uv.dtype)
    xyw = jnp.einsum("bjk,bik->bji", jnp.concatenate([uv, ones], -1), crop_to_image)
    return xyw[..., :2] / xyw[..., 2:3]
