"""The paper's augmentation (Yang et al. 2019, Sec. 4.1) as ONE warp of the stored image.

The stored image (``image`` [C, C, 3], see :func:`handvae.data.source.decode_example`) renders a
square window of side 2× the hand's crop box around it; the crop box (``crop_side`` pixels) is
centred at the image centre, and ``K_image`` is the stored image's camera. The output crop
(``image_size`` S) is one affine warp of that image:

* rotation ``θ ∈ [−π, π]``: a true camera rotation about the optical axis, whose image map is
  ``G = K R_z(θ) K⁻¹`` (a rotation about the principal point for square pixels); pose, cloud and
  root rotate by ``R_z(θ)`` (:func:`handvae.ops.rotation.rotation_about_z`), and the output
  camera ``K' = A K R_zᵀ`` is a pinhole camera (no skew) for every principal point;
* window: centred where G takes the crop-box centre, side ``crop_side · s`` (``zoom="out"``,
  the default: the hand shrinks by 1/s) or ``crop_side / s`` (``zoom="in"``: the hand grows by
  s), with ``s ∈ [1, 1.2]``;
* shift ``±20`` px per output axis for a 256-px crop box, scaled to ``crop_side`` (stored-image
  pixels);
* hue ``±0.1`` of the hue circle (a linear hue rotation about the grey axis,
  :func:`hue_rotation_matrix`).

Which way the scale zooms: Sec. 4.1 says "The images are scaled randomly between [1, 1.2]";
read literally, the image (the hand) is enlarged by s, i.e. ``zoom="in"``. The paper does not say
more; the default ``"out"`` (window grows by s) keeps the whole hand in view under the ±20 px
shift and any rotation (the crop box is 1.3× the hand's bounding square, so a 45° turn of a
tight box already reaches its corners). Both stay inside the stored context (:func:`max_extent`).

Decision (moved from WORKSPACE.md)

**Augmentation scale direction.** Sec. 4.1: "The images are scaled randomly between
[1, 1.2]"; read literally the image (the hand) is enlarged, i.e. zoom in. The paper says no
more. Default `data.augment_zoom="out"` (window ×s, hand ×1/s) keeps the whole hand in view
under the shift and any rotation (the crop box is 1.3× the hand's bounding square, so a 45°
turn already reaches its corners); `"in"` is the literal reading. Both stay inside the
stored context. Shift: the paper says "translated [−20, 20] pixels" of its 256² crops; we
shift by 20/256 of the crop box along the output axes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from PIL import Image

from handvae.ops import image_warp
from handvae.ops import rotation

SCALE_RANGE = (1.0, 1.2)
SHIFT_PIXELS = 20.0        # per axis, in pixels of a REFERENCE_SIZE crop box
REFERENCE_SIZE = 256
MAX_ROTATION = np.pi
MAX_HUE = 0.1
ZOOMS = ("out", "in")


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """One example's augmentation.

    Attributes:
      scale: s ∈ [1, 1.2] (window side ``crop_side · s`` when zooming out, ``/ s`` when in).
      shift: (du, dv) in pixels of a 256-px crop box, along the output axes.
      angle: θ, radians, camera rotation about the optical axis.
      hue: hue turn, fraction of the hue circle.
    """
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    angle: float = 0.0
    hue: float = 0.0


IDENTITY = AugmentParams()


def sample_params(rng: np.random.Generator) -> AugmentParams:
    """Draws the paper's augmentation (uniform in every range)."""
    shift = rng.uniform(-SHIFT_PIXELS, SHIFT_PIXELS, size=2)
    return AugmentParams(scale=float(rng.uniform(*SCALE_RANGE)),
                         shift=(float(shift[0]), float(shift[1])),
                         angle=float(rng.uniform(-MAX_ROTATION, MAX_ROTATION)),
                         hue=float(rng.uniform(-MAX_HUE, MAX_HUE)))


def window_side(params: AugmentParams, crop_side: float, zoom: str = "out") -> float:
    """Side of the sampled window in stored-image pixels."""
    if zoom not in ZOOMS:
        raise ValueError(f"data.augment_zoom must be one of {ZOOMS}, got {zoom!r}")
    return crop_side * params.scale if zoom == "out" else crop_side / params.scale


def crop_transform(params: AugmentParams, image_side: int, crop_side: float,
                   k_image: np.ndarray, output_size: int, zoom: str = "out", xp: Any = np
                   ) -> np.ndarray:
    """[3, 3] affine map A from stored-image pixels to output-crop pixels.

    ``A = T(c_out + shift·m₀) · m · T(−G(c)) · G`` with ``G = K R_z(θ) K⁻¹``, c the stored
    image's centre (the crop box's centre), c_out the output centre, m = S / window side and
    m₀ = S / crop_side (so the shift is ±20 px of a 256-px box in the output at s = 1).

    Args:
      params: the augmentation (``IDENTITY``: the crop box resized to S).
      image_side: C, side of the stored image, pixels.
      crop_side: side of the crop box in stored-image pixels.
      k_image: [3, 3] intrinsics of the stored image.
      output_size: S.
      zoom: "out" or "in" (see the module doc).
      xp: the array module: ``numpy`` (float64, the host path) or ``jax.numpy`` (float32,
        traced per row by ``handvae.data.device_augment``; ``params``' fields and
        ``crop_side`` may then be traced scalars).
    """
    k = xp.asarray(k_image, np.float64 if xp is np else None)
    g = k @ rotation.rotation_about_z(params.angle, xp) @ xp.linalg.inv(k)
    g = g / g[2, 2]
    c = (image_side - 1) / 2
    c_rot = image_warp.apply_affine(g, [c, c], xp)
    c_out = (output_size - 1) / 2
    m = output_size / window_side(params, crop_side, zoom)
    shift = xp.asarray(params.shift) * (crop_side / REFERENCE_SIZE) * (output_size / crop_side)
    scale = xp.array([[m, 0.0, 0.0], [0.0, m, 0.0], [0.0, 0.0, 1.0]])
    return (image_warp.translation(c_out + shift[0], c_out + shift[1], xp) @ scale
            @ image_warp.translation(-c_rot[0], -c_rot[1], xp) @ g)


def output_intrinsics(transform: np.ndarray, k_image: np.ndarray, angle: float) -> np.ndarray:
    """[3, 3] intrinsics of the output crop for the 3-D frame rotated by θ: ``A K R_zᵀ``.

    With ``A = … G`` and ``G = K R_z K⁻¹`` this is ``(…) K``: a pinhole camera, upper triangular.
    """
    return (np.asarray(transform, np.float64) @ np.asarray(k_image, np.float64)
            @ rotation.rotation_about_z(angle).T)


def sample_positions(transform: np.ndarray, output_size: int) -> np.ndarray:
    """[4, 2] stored-image positions sampled by the output's corner pixel centres.

    The sampled set is the convex hull of these (the map is affine): every output pixel reads
    real stored pixels iff all four lie in ``[0, C − 1]²``.
    """
    corners = np.array([[0, 0], [output_size - 1, 0], [0, output_size - 1],
                        [output_size - 1, output_size - 1]], np.float64)
    return image_warp.apply_affine(np.linalg.inv(transform), corners)


def max_extent(crop_side: float, zoom: str = "out") -> float:
    """Largest distance from the crop-box centre that the augmentation samples (square pixels).

    Half the diagonal of the largest window plus the largest shift:
    ``(w/2)·√2 + √2·20·crop_side/256``, w the largest window side. The stored image must reach
    this far: for the 2×-context storage (C = 2·crop_side) it is 0.98·C/2 when zooming out
    (251.1 of 255.5 px for C = 512).
    """
    side = crop_side * SCALE_RANGE[1] if zoom == "out" else crop_side
    worst_shift = np.sqrt(2) * SHIFT_PIXELS * crop_side / REFERENCE_SIZE
    # the shift is in output pixels at m₀; in stored pixels it is multiplied by window/crop_side
    return float(np.sqrt(2) * side / 2 + worst_shift * side / crop_side)


# RGB → YIQ (NTSC). Rotating the (I, Q) chroma plane about the luma axis is the classic linear
# hue rotation (SVG/CSS ``hue-rotate``): one 3×3 matrix, applied to the uint8
# image in one pass (Pillow), instead of two HSV conversions per image (≈ 5× slower here).
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                        [0.211, -0.523, 0.312]])


def hue_rotation_matrix(delta: float, xp: Any = np) -> np.ndarray:
    """[3, 3] RGB → RGB matrix turning the hue by ``delta`` turns (2π·delta rad), luma kept.

    Positive ``delta`` moves red towards yellow, like an HSV hue increase. Greys are fixed.
    ``xp``: numpy (float64) or jax.numpy (float32, ``delta`` may be traced).
    """
    c, s = xp.cos(2 * np.pi * delta), xp.sin(2 * np.pi * delta)
    turn = xp.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])
    yiq = xp.asarray(_RGB_TO_YIQ)
    return xp.linalg.solve(yiq, turn @ yiq)


def adjust_hue(image: np.ndarray, delta: float) -> np.ndarray:
    """Turns the hue of [H, W, 3] uint8 RGB by ``delta`` turns (see :func:`hue_rotation_matrix`).

    Pillow's matrix conversion does it in C (rounded and clipped to uint8).
    """
    if delta == 0:
        return image
    matrix = np.concatenate([hue_rotation_matrix(delta), np.zeros((3, 1))], axis=1)
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).convert(
        "RGB", tuple(matrix.reshape(-1))))


def render(image: np.ndarray, transform: np.ndarray, output_size: int, hue: float = 0.0
           ) -> np.ndarray:
    """[S, S, 3] uint8: ``image`` warped by ``transform`` (stored → output), hue turned."""
    image = np.asarray(image)
    if output_size == image.shape[0] and np.allclose(transform, np.eye(3)):
        out = image
    else:
        out = image_warp.warp_affine(image, transform, output_size)
    return adjust_hue(out, hue)


def augment(image: np.ndarray, keypoints_2d: np.ndarray, k_image: np.ndarray,
            crop_side: float, params: AugmentParams, output_size: int, zoom: str = "out"
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Renders the output crop of one stored image and moves its 2-D keypoints.

    Args:
      image: [C, C, 3] uint8 stored image (crop box of ``crop_side`` px at its centre).
      keypoints_2d: [J, 2] keypoints in stored-image pixels.
      k_image: [3, 3] intrinsics of the stored image.
      crop_side: crop-box side, stored-image pixels.
      params: the augmentation (``IDENTITY`` only crops the box and resizes it to S).
      output_size: S, output side in pixels.
      zoom: "out" or "in" (see the module doc).

    Returns:
      (image [S, S, 3] uint8, keypoints_2d [J, 2] output pixels, rotation [3, 3] to apply to
      every 3-D quantity (pose, cloud, root) as ``x @ rotation.T``, K [3, 3] of the output
      crop for the rotated 3-D frame).
    """
    image = np.asarray(image)
    side = image.shape[0]
    if image.ndim != 3 or image.shape[:2] != (side, side):
        raise ValueError(f"stored image must be square [C, C, 3], got {image.shape}")
    matrix = crop_transform(params, side, crop_side, k_image, output_size, zoom)
    out = render(image, matrix, output_size, params.hue)
    return (out, image_warp.apply_affine(matrix, keypoints_2d).astype(np.float32),
            rotation.rotation_about_z(params.angle),
            output_intrinsics(matrix, k_image, params.angle))
