"""2-D Gaussian heat maps of the keypoints."""

from __future__ import annotations

from typing import Any

import numpy as np


def keypoint_heatmaps(keypoints_2d: np.ndarray, image_size: int, heatmap_size: int,
                      sigma: float, xp: Any = np) -> np.ndarray:
    """Unnormalised Gaussians (peak 1) at each keypoint, at heat-map resolution.

    Args:
      keypoints_2d: [J, 2] keypoints (u, v) in pixels of an image_size² crop (pixel centres at
        integer coordinates).
      image_size: crop side, pixels.
      heatmap_size: heat-map side Hm, pixels.
      sigma: standard deviation, heat-map pixels.
      xp: the array module, ``numpy`` (computed in float64) or ``jax.numpy`` (its default
        float; ``handvae.data.device_augment``).

    Returns:
      [Hm, Hm, J] float32 in [0, 1]; keypoints outside the crop give a partial or empty map.
    """
    keypoints_2d = xp.asarray(keypoints_2d, np.float64 if xp is np else None)
    if keypoints_2d.ndim != 2 or keypoints_2d.shape[1] != 2:
        raise ValueError(f"keypoints_2d must be [J, 2], got {keypoints_2d.shape}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    centres = (keypoints_2d + 0.5) * (heatmap_size / image_size) - 0.5   # [J, 2]
    grid = xp.arange(heatmap_size, dtype=keypoints_2d.dtype)
    gauss = xp.exp(-((grid[None, None, :] - centres[:, :, None]) ** 2) / (2 * sigma ** 2))
    # gauss[j, 0, u] along columns, gauss[j, 1, v] along rows; separable product.
    maps = gauss[:, 1, :, None] * gauss[:, 0, None, :]                   # [J, Hm(v), Hm(u)]
    if xp is not np:
        return maps.transpose(1, 2, 0).astype(xp.float32)
    return np.ascontiguousarray(maps.transpose(1, 2, 0), dtype=np.float32)
