"""Pinhole camera helpers: projection, back-projection, depth map → points.

Conventions: camera frame x right, y down, z forward (metres); pixel (u, v) with u along
columns and v along rows, pixel centres at integer coordinates; ``K`` = [[fx, 0, cx],
[0, fy, cy], [0, 0, 1]].
"""

from __future__ import annotations

import numpy as np

# STB's Intel RealSense F200 ("SK") colour-camera intrinsics and the depth→colour extrinsics,
# as published with the data set and used by the public STB loaders (e.g. Ge et al. 2019).
STB_SK_COLOR_K = np.array(
    [[607.92271, 0.0, 314.78337], [0.0, 607.88192, 236.42484], [0.0, 0.0, 1.0]])
STB_SK_DEPTH_K = np.array(
    [[475.62768, 0.0, 336.41179], [0.0, 474.77709, 238.77962], [0.0, 0.0, 1.0]])
STB_SK_ROTATION_VECTOR = np.array([0.00531, -0.01196, 0.00301])
STB_SK_TRANSLATION_MM = np.array([-24.0381, -0.4563, -1.2326])
STB_IMAGE_SIZE = (480, 640)  # (height, width)
RHD_IMAGE_SIZE = (320, 320)


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Projects camera-frame points to pixels.

    Args:
      points: [..., 3] camera-frame points (z > 0), any length unit.
      K: [3, 3] intrinsics (or [..., 3, 3] broadcastable with ``points``' leading dims).

    Returns:
      [..., 2] pixel coordinates (u, v).
    """
    points = np.asarray(points, dtype=np.float64)
    uvw = points @ np.swapaxes(np.asarray(K, dtype=np.float64), -1, -2)
    return uvw[..., :2] / uvw[..., 2:3]


def unproject(uv: np.ndarray, depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Back-projects pixels with known depth.

    Args:
      uv: [..., 2] pixel coordinates (u, v).
      depth: [...] z of each pixel, same unit as the output.
      K: [3, 3] intrinsics.

    Returns:
      [..., 3] camera-frame points.
    """
    uv = np.asarray(uv, dtype=np.float64)
    depth = np.asarray(depth, dtype=np.float64)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    x = (uv[..., 0] - cx) / fx * depth
    y = (uv[..., 1] - cy) / fy * depth
    return np.stack([x, y, depth], axis=-1)


def depth_to_points(depth: np.ndarray, K: np.ndarray, mask: np.ndarray | None = None
                    ) -> np.ndarray:
    """Back-projects a depth map into a point cloud.

    Args:
      depth: [H, W] depth (z) per pixel, metres; 0 or non-finite means no measurement.
      K: [3, 3] intrinsics of the depth map.
      mask: optional [H, W] bool; only pixels where it is true are kept.

    Returns:
      [P, 3] camera-frame points in metres, in row-major pixel order.
    """
    depth = np.asarray(depth)
    valid = np.isfinite(depth) & (depth > 0)
    if mask is not None:
        if mask.shape != depth.shape:
            raise ValueError(f"mask shape {mask.shape} != depth shape {depth.shape}")
        valid &= mask.astype(bool)
    v, u = np.nonzero(valid)
    return unproject(np.stack([u, v], axis=-1), depth[v, u], K)


def rodrigues(rotation_vector: np.ndarray) -> np.ndarray:
    """Rotation matrix [3, 3] of an axis-angle vector [3] (radians)."""
    rotation_vector = np.asarray(rotation_vector, dtype=np.float64)
    theta = np.linalg.norm(rotation_vector)
    if theta < 1e-12:
        return np.eye(3)
    k = rotation_vector / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * kx @ kx


def stb_depth_to_color(xyz_mm: np.ndarray) -> np.ndarray:
    """Moves STB "SK" points from the depth-camera frame to the colour-camera frame.

    STB's ``handPara`` labels and its depth maps live in the RealSense depth camera's frame;
    the public STB loaders (Ge et al., CVPR 2019, ``hand_shape_pose``; Yang et al., ``bihand``)
    map them to the colour camera as ``(xyz − STB_SK_TRANSLATION_MM) @ R`` with
    ``R = rodrigues(STB_SK_ROTATION_VECTOR)``, then project with ``STB_SK_COLOR_K``.

    Args:
      xyz_mm: [..., 3] points in the depth-camera frame, millimetres.

    Returns:
      [..., 3] the same points in the colour-camera frame, millimetres.
    """
    xyz_mm = np.asarray(xyz_mm, dtype=np.float64)
    return (xyz_mm - STB_SK_TRANSLATION_MM) @ rodrigues(STB_SK_ROTATION_VECTOR)


def stb_color_to_depth(xyz_mm: np.ndarray) -> np.ndarray:
    """Inverse of :func:`stb_depth_to_color`: [..., 3] colour frame → depth frame, millimetres."""
    xyz_mm = np.asarray(xyz_mm, dtype=np.float64)
    return xyz_mm @ rodrigues(STB_SK_ROTATION_VECTOR).T + STB_SK_TRANSLATION_MM
