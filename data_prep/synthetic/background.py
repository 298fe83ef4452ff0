"""Procedural backgrounds: textured colour images and a background plane's depth.

Colour: a two-colour gradient mixed with smooth value noise, stripes or checks, and fine
noise. Depth: a random plane ``n·p = d`` facing the camera, seen through K (metres).
"""

from __future__ import annotations

import numpy as np


def _hat_weights(size: int, cells: int) -> np.ndarray:
    """[size, cells + 1] linear-interpolation weights of ``size`` samples over ``cells``."""
    position = np.linspace(0.0, cells, size, dtype=np.float32)
    nodes = np.arange(cells + 1, dtype=np.float32)
    return np.maximum(0.0, 1.0 - np.abs(position[:, None] - nodes[None, :]))


def value_noise(rng: np.random.Generator, image_size: tuple[int, int], cells: int,
                channels: int = 3) -> np.ndarray:
    """Smooth noise: a random [cells+1, cells+1] grid bilinearly upsampled.

    Returns:
      [H, W, channels] float32 in [0, 1].
    """
    height, width = image_size
    grid = rng.uniform(0.0, 1.0, size=(cells + 1, cells + 1, channels)).astype(np.float32)
    rows = _hat_weights(height, cells)            # [H, c+1]
    cols = _hat_weights(width, cells)             # [W, c+1]
    along_rows = np.tensordot(rows, grid, axes=(1, 0))          # [H, c+1, channels]
    return np.ascontiguousarray((along_rows.transpose(0, 2, 1) @ cols.T).transpose(0, 2, 1))


def procedural_background(rng: np.random.Generator, image_size: tuple[int, int],
                          plain: bool = False) -> np.ndarray:
    """A textured random background: coloured noise blended with stripes or checks.

    Args:
      rng: the generator.
      image_size: (height, width).
      plain: a smooth two-colour gradient only (compresses well; used for the tiny dummy
        data sets).

    Returns:
      [H, W, 3] float32 colour in [0, 1].
    """
    height, width = image_size
    base = rng.uniform(0.1, 0.9, size=3).astype(np.float32)
    other = rng.uniform(0.1, 0.9, size=3).astype(np.float32)
    ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    image = np.broadcast_to(base * (1 - ramp) + other * ramp, (height, width, 3))
    if plain:
        return np.array(image)
    image = 0.5 * image + 0.5 * value_noise(rng, image_size, int(rng.integers(3, 12)))
    v = np.arange(height, dtype=np.float32)[:, None]
    u = np.arange(width, dtype=np.float32)[None, :]
    angle = rng.uniform(0.0, np.pi)
    period = rng.uniform(6.0, 60.0)
    coordinate = (u * np.cos(angle) + v * np.sin(angle)) / period
    if rng.uniform() < 0.5:
        pattern = 0.5 + 0.5 * np.sin(2 * np.pi * coordinate + rng.uniform(0, 2 * np.pi))
    else:
        across = (-u * np.sin(angle) + v * np.cos(angle)) / period
        pattern = (np.floor(coordinate) + np.floor(across)) % 2
    pattern = pattern.astype(np.float32)[..., None]
    stripe_colour = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
    weight = np.float32(rng.uniform(0.1, 0.5))
    image = image * (1 - weight * pattern) + (weight * pattern) * stripe_colour
    fine = value_noise(rng, image_size, int(rng.integers(20, 60)), channels=1)
    return np.clip(image * (0.85 + 0.3 * fine), 0.0, 1.0)


def random_plane(rng: np.random.Generator, distance_range: tuple[float, float]
                 ) -> tuple[np.ndarray, float]:
    """A random background plane ``n·p = d`` facing the camera, slightly tilted.

    Returns:
      (unit normal n [3], offset d in metres), d drawn from ``distance_range``.
    """
    normal = np.array([rng.normal(0, 0.25), rng.normal(0, 0.25), 1.0])
    return normal / np.linalg.norm(normal), float(rng.uniform(*distance_range))


def plane_depth_from(normal: np.ndarray, offset: float, K: np.ndarray,
                     image_size: tuple[int, int], max_depth: float = 10.0) -> np.ndarray:
    """[H, W] depth (metres) of the plane ``normal·p = offset`` seen through ``K``.

    Rays that miss the plane (or meet it beyond ``max_depth``) get ``max_depth``.
    """
    height, width = image_size
    x = ((np.arange(width) - K[0, 2]) / K[0, 0])[None, :]
    y = ((np.arange(height) - K[1, 2]) / K[1, 1])[:, None]
    denominator = normal[0] * x + normal[1] * y + normal[2]
    depth = np.where(denominator > 1e-6, offset / np.maximum(denominator, 1e-6), max_depth)
    return np.clip(depth, 0.0, max_depth)
