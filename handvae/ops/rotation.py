"""Rotations used by the data pipeline: view correction and in-plane rotation.

View correction (Li & Lee, CVPR 2019, "Point-to-pose voting"; Yang et al. 2019): a crop taken
off the optical axis sees the hand obliquely. Rotating the camera frame so that the ray through
the crop centre becomes the optical axis (+z) makes the crop look as if the camera pointed at
the hand; pose and cloud are rotated by the same matrix.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def view_correction_rotation(center_uv: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Rotation that maps the ray through pixel ``center_uv`` onto the optical axis.

    Args:
      center_uv: [2] pixel (u, v) of the crop centre.
      K: [3, 3] intrinsics.

    Returns:
      R [3, 3], a proper rotation with ``R @ ray / |ray| = (0, 0, 1)``. It is the smallest such
      rotation (about the axis ray × z), so it leaves no spurious roll.
    """
    ray = np.linalg.solve(np.asarray(K, np.float64),
                          np.array([center_uv[0], center_uv[1], 1.0], dtype=np.float64))
    ray /= np.linalg.norm(ray)
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(ray, z)
    sin = np.linalg.norm(axis)
    cos = float(np.dot(ray, z))
    if sin < 1e-12:
        return np.eye(3)
    axis /= sin
    kx = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + sin * kx + (1 - cos) * kx @ kx


def rotation_about_z(angle: float | np.ndarray, xp: Any = np) -> np.ndarray:
    """In-plane rotation matrices about the optical axis.

    Args:
      angle: scalar or [...] radians; positive turns +x towards +y (clockwise on screen,
        since image v points down).
      xp: the array module: ``numpy`` (float64) or ``jax.numpy`` (its default float, for the
        device-side augmentation, ``handvae.data.device_augment``).

    Returns:
      [..., 3, 3] rotation matrices.
    """
    angle = xp.asarray(angle, dtype=np.float64) if xp is np else xp.asarray(angle)
    c, s = xp.cos(angle), xp.sin(angle)
    zero, one = xp.zeros_like(c), xp.ones_like(c)
    return xp.stack([xp.stack([c, -s, zero], -1), xp.stack([s, c, zero], -1),
                     xp.stack([zero, zero, one], -1)], -2)


def rotation_2d(angle: float | np.ndarray) -> np.ndarray:
    """[..., 2, 2] image-plane rotation matching :func:`rotation_about_z` for (u, v) offsets."""
    return rotation_about_z(angle)[..., :2, :2]
