"""The paper's augmentation (Yang et al. 2019, Sec. 4): scale, shift, in-plane rotation, hue.

The stored crop is view-corrected: its camera ``K_crop`` has one focal length and its
principal point at the crop centre. Rotating the crop image by θ about its centre is then
exactly rotating the camera frame by θ about the optical axis, so the 3-D keypoints, the cloud
and the root are rotated by :func:`handvae.ops.rotation.rotation_about_z` (θ) and the
normalised pose stays root-relative. Scaling and shifting the crop only change the intrinsics
(``K`` of the output crop, returned), never the 3-D targets. The whole image change (resize to
``image_size`` included) is ONE affine warp.

Ranges (for a 256² crop; the shift scales with the output size):

* scale ``s ∈ [1, 1.2]``: the crop window grows by ``s`` (the hand shrinks by 1/s), so the
  hand stays in view after shift and rotation;
* shift ``±20`` px per axis;
* rotation ``θ ∈ [−π, π]``;
* hue ``±0.1`` of the hue circle (a linear hue rotation about the grey axis, see
  :func:`hue_rotation_matrix`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from handvae.ops import image_warp as crop_lib
from handvae.ops import rotation

SCALE_RANGE = (1.0, 1.2)
SHIFT_PIXELS = 20.0        # in pixels of a REFERENCE_SIZE crop
REFERENCE_SIZE = 256
MAX_ROTATION = np.pi
MAX_HUE = 0.1


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """One example's augmentation: window scale, shift (output pixels), angle (rad), hue."""
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    angle: float = 0.0
    hue: float = 0.0


IDENTITY = AugmentParams()


def sample_params(rng: np.random.Generator, output_size: int) -> AugmentParams:
    """Draws the paper's augmentation for an ``output_size``² crop."""
    shift = rng.uniform(-SHIFT_PIXELS, SHIFT_PIXELS, size=2) * (output_size / REFERENCE_SIZE)
    return AugmentParams(scale=float(rng.uniform(*SCALE_RANGE)),
                         shift=(float(shift[0]), float(shift[1])),
                         angle=float(rng.uniform(-MAX_ROTATION, MAX_ROTATION)),
                         hue=float(rng.uniform(-MAX_HUE, MAX_HUE)))


def crop_transform(params: AugmentParams, src_size: int, dst_size: int) -> np.ndarray:
    """[3, 3] affine map from stored-crop pixels to output-crop pixels.

    ``u' = c' + shift + (dst/src)/scale · R(θ) (u − c)`` with c, c' the two crops' centres and
    R(θ) = :func:`handvae.ops.rotation.rotation_2d` (θ) (so it matches the 3-D rotation).
    """
    c_src, c_dst = (src_size - 1) / 2, (dst_size - 1) / 2
    linear = np.eye(3)
    linear[:2, :2] = (dst_size / src_size) / params.scale * rotation.rotation_2d(params.angle)
    return (crop_lib.translation(c_dst + params.shift[0], c_dst + params.shift[1]) @ linear
            @ crop_lib.translation(-c_src, -c_src))


def output_intrinsics(k_crop: np.ndarray, params: AugmentParams, src_size: int, dst_size: int
                      ) -> np.ndarray:
    """[3, 3] intrinsics of the output crop, for the 3-D frame rotated by θ about z.

    With ``K_crop`` = [[f, 0, c], [0, f, c], [0, 0, 1]], the rotated points project through
    ``[[f·m, 0, c' + du], [0, f·m, c' + dv], [0, 0, 1]]``, m = (dst/src)/scale.
    """
    # K' R_z = A K (R_z keeps z) ⇒ K' = A K R_zᵀ; for a centred square-pixel K_crop it is
    # upper-triangular, i.e. a genuine pinhole camera.
    return (crop_transform(params, src_size, dst_size) @ np.asarray(k_crop, np.float64)
            @ rotation.rotation_about_z(params.angle).T)


# RGB → YIQ (NTSC). Rotating the (I, Q) chroma plane about the luma axis is the classic linear
# hue rotation (SVG/CSS ``hue-rotate``): one 3×3 matrix, applied to the uint8
# image in one pass (Pillow), instead of two HSV conversions per image (≈ 5× slower here).
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                        [0.211, -0.523, 0.312]])


def hue_rotation_matrix(delta: float) -> np.ndarray:
    """[3, 3] RGB → RGB matrix turning the hue by ``delta`` turns (2π·delta rad), luma kept.

    Positive ``delta`` moves red towards yellow, like an HSV hue increase. Greys are fixed.
    """
    c, s = np.cos(2 * np.pi * delta), np.sin(2 * np.pi * delta)
    turn = np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])
    return np.linalg.solve(_RGB_TO_YIQ, turn @ _RGB_TO_YIQ)


def adjust_hue(image: np.ndarray, delta: float) -> np.ndarray:
    """Turns the hue of [H, W, 3] uint8 RGB by ``delta`` turns (see :func:`hue_rotation_matrix`).

    Pillow's matrix conversion does it in C (rounded and clipped to uint8).
    """
    if delta == 0:
        return image
    matrix = np.concatenate([hue_rotation_matrix(delta), np.zeros((3, 1))], axis=1)
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).convert(
        "RGB", tuple(matrix.reshape(-1))))


def augment(image: np.ndarray, keypoints_2d: np.ndarray, k_crop: np.ndarray,
            params: AugmentParams, output_size: int) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray, np.ndarray]:
    """Warps one stored crop and its 2-D keypoints; returns what the 3-D side needs.

    Args:
      image: [S0, S0, 3] uint8 stored crop.
      keypoints_2d: [J, 2] keypoints in stored-crop pixels.
      k_crop: [3, 3] intrinsics of the stored crop.
      params: the augmentation (``IDENTITY`` only resizes).
      output_size: S, output side in pixels.

    Returns:
      (image [S, S, 3] uint8, keypoints_2d [J, 2] output pixels, rotation [3, 3] to apply to
      every 3-D quantity (pose, cloud, root) as ``x @ rotation.T``, K [3, 3] of the output
      crop for the rotated 3-D frame).
    """
    src_size = image.shape[0]
    if image.shape[:2] != (src_size, src_size):
        raise ValueError(f"stored crop must be square [S0, S0, 3], got {image.shape}")
    matrix = crop_transform(params, src_size, output_size)
    if np.allclose(matrix, np.eye(3)):
        out = np.asarray(image)
    else:
        out = crop_lib.warp_affine(image, matrix, output_size)
    out = adjust_hue(out, params.hue)
    return (out, crop_lib.apply_affine(matrix, keypoints_2d).astype(np.float32),
            rotation.rotation_about_z(params.angle),
            output_intrinsics(k_crop, params, src_size, output_size))
