"""Image warps with the project's pixel convention (pixel centres at integer (u, v)).

One implementation for the builders (view-corrected crops, a homography) and the input pipeline
(augmentation, an affine map): :func:`warp_perspective` renders an image through a homography
with Pillow's ``Image.transform``, C code that releases the GIL, so the pipeline's worker
threads run in parallel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

# Pillow puts pixel centres at half-integers; ours are at integers.
_TO_PILLOW = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])


def translation(du: float, dv: float, xp: Any = np) -> np.ndarray:
    """[3, 3] homogeneous translation by (du, dv) pixels (``xp``: numpy or jax.numpy)."""
    return xp.array([[1.0, 0.0, du], [0.0, 1.0, dv], [0.0, 0.0, 1.0]])


def resize_matrix(src_size: int, dst_size: int) -> np.ndarray:
    """[3, 3] affine map from a src_size² image's pixels to a dst_size² resize of it.

    Pixel edges map to pixel edges: u' = (u + 0.5) · dst/src − 0.5.
    """
    s = dst_size / src_size
    return np.array([[s, 0.0, 0.5 * s - 0.5], [0.0, s, 0.5 * s - 0.5], [0.0, 0.0, 1.0]])


def apply_affine(matrix: np.ndarray, uv: np.ndarray, xp: Any = np) -> np.ndarray:
    """Applies a [3, 3] (or [2, 3]) affine map to [..., 2] pixel coordinates.

    ``xp``: numpy (float64) or jax.numpy (its default float).
    """
    dtype = np.float64 if xp is np else None
    matrix = xp.asarray(matrix, dtype)
    uv = xp.asarray(uv, dtype)
    return uv @ matrix[:2, :2].T + matrix[:2, 2]


def warp_perspective(image: np.ndarray, dst_to_src: np.ndarray, size: int) -> np.ndarray:
    """Renders ``image`` through a homography with bilinear sampling (black outside).

    Args:
      image: [H, W, C] uint8.
      dst_to_src: [3, 3] homography taking output pixels (u, v, 1) to source pixels, both with
        pixel centres at integer coordinates.
      size: output side, pixels.

    Returns:
      [size, size, C] uint8 with ``out[v', u'] = image`` at ``dst_to_src (u', v')``.

    Raises:
      ValueError: ``image`` is not uint8 [H, W, C].
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"image must be uint8 [H, W, C], got {image.dtype} {image.shape}")
    h = _TO_PILLOW @ np.asarray(dst_to_src, np.float64) @ np.linalg.inv(_TO_PILLOW)
    h = h / h[2, 2]
    affine = np.allclose(h[2, :2], 0.0)
    out = Image.fromarray(np.ascontiguousarray(image)).transform(
        (size, size), Image.Transform.AFFINE if affine else Image.Transform.PERSPECTIVE,
        data=tuple(h.reshape(-1)[:6 if affine else 8]), resample=Image.Resampling.BILINEAR)
    return np.asarray(out)


def warp_affine(image: np.ndarray, src_to_dst: np.ndarray, size: int) -> np.ndarray:
    """Renders ``image`` under an affine map given source → output (bilinear, black outside).

    Args:
      image: [H, W, C] uint8.
      src_to_dst: [3, 3] affine map from source pixels to output pixels.
      size: output side, pixels.

    Returns:
      [size, size, C] uint8 with ``out[v', u'] = image`` at ``src_to_dst⁻¹ (u', v')``.
    """
    return warp_perspective(image, np.linalg.inv(np.asarray(src_to_dst, np.float64)), size)
