"""The view-corrected crop's box and camera, shared by the TFDS builders and inference.

A crop is a square around the hand (its side ``CROP_MARGIN`` times the hand's bounding square,
at least ``MIN_CROP_SIDE`` source pixels). View correction (Li & Lee 2019) turns the camera so
the ray through the box centre becomes the optical axis (:func:`handvae.ops.rotation.
view_correction_rotation`); the crop is the image a virtual camera :func:`crop_intrinsics`
pointed along that axis sees, rendered from the source image by :func:`crop_homography`.
"""

from __future__ import annotations

import numpy as np

CROP_MARGIN = 1.3        # crop side / side of the hand's bounding square
MIN_CROP_SIDE = 24.0     # pixels of the source image; avoids absurd magnification


def crop_box(hand_uv: np.ndarray, keypoints_uv: np.ndarray, margin: float = CROP_MARGIN
             ) -> tuple[np.ndarray, float]:
    """Square crop box around a hand.

    Args:
      hand_uv: [M, 2] pixels (u, v) of the hand (mask pixels, projected surface points, or the
        two corners of a hand box).
      keypoints_uv: [K, 2] projected keypoints, pixels (K may be 0).
      margin: side of the box divided by the side of the hand's bounding square.

    Returns:
      (centre [2] pixels, side in pixels).
    """
    uv = np.concatenate([np.asarray(hand_uv, np.float64).reshape(-1, 2),
                         np.asarray(keypoints_uv, np.float64).reshape(-1, 2)])
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    center = (lo + hi) / 2
    side = max(float(np.max(hi - lo)) * margin, MIN_CROP_SIDE)
    return center, side


def crop_intrinsics(K: np.ndarray, side: float, crop_size: int) -> np.ndarray:
    """[3, 3] intrinsics of the view-corrected crop camera.

    The focal length is the mean of ``K``'s magnified by ``crop_size / side``; the principal point
    is the crop centre ``(crop_size − 1) / 2`` (pixel centres at integer coordinates).
    """
    # One focal length for both axes (square pixels): an in-plane rotation of the crop is then
    # exactly a rotation of the camera about z, which the augmentation relies on.
    focal = (K[0, 0] + K[1, 1]) / 2 * crop_size / side
    c = (crop_size - 1) / 2
    return np.array([[focal, 0.0, c], [0.0, focal, c], [0.0, 0.0, 1.0]])


def crop_homography(K: np.ndarray, view_rotation: np.ndarray, k_crop: np.ndarray
                    ) -> np.ndarray:
    """[3, 3] map from crop pixels (u, v, 1) to source-image pixels: ``K · Rᵀ · K_crop⁻¹``.

    Args:
      K: [3, 3] intrinsics of the source image.
      view_rotation: [3, 3] R, source camera frame → view-corrected frame.
      k_crop: [3, 3] intrinsics of the crop (:func:`crop_intrinsics`).
    """
    return (np.asarray(K, np.float64) @ np.asarray(view_rotation, np.float64).T
            @ np.linalg.inv(np.asarray(k_crop, np.float64)))
