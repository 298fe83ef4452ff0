"""Sampling a fixed-size cloud from an example's pool of hand-surface points."""

from __future__ import annotations

import numpy as np


def sample_cloud(points: np.ndarray, num_points: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, bool]:
    """Draws ``num_points`` points from the pool.

    Without replacement when the pool is large enough; with replacement otherwise, and then
    the flag is set (the batch's ``cloud_resampled``).

    Args:
      points: [P, 3] pool (P ≥ 1), any unit.
      num_points: N, points wanted.
      rng: the example's generator.

    Returns:
      ([N, 3] float32 cloud, whether it was sampled with replacement).
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ValueError(f"points must be a non-empty [P, 3] pool, got {points.shape}")
    index, replace = sample_index(len(points), num_points, rng)
    return points[index].astype(np.float32), replace


def sample_index(pool_size: int, num_points: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, bool]:
    """:func:`sample_cloud`'s draw: ([N] indices into a pool of ``pool_size`` ≥ 1, replaced).

    The same draw from ``rng`` as :func:`sample_cloud` makes, so a row's cloud can be taken
    later (``handvae.data.pipeline.features_from_params``).
    """
    replace = pool_size < num_points
    return rng.choice(pool_size, size=num_points, replace=replace), bool(replace)
