"""Build-time processing shared by the RHD and STB builders: one raw frame → one example.

Everything deterministic happens here, once, so the training pipeline only warps, samples and
batches:

1. the crop box: a square around the hand's pixels (mask or projected depth points) and its
   keypoints, enlarged by ``CROP_MARGIN``;
2. view correction (Li & Lee 2019): the camera frame is rotated so the ray through the box
   centre becomes the optical axis (+z); the colour crop is rendered by the corresponding
   homography, i.e. it is the image a virtual camera ``K_crop`` (principal point at the crop
   centre) pointed at the hand would see;
3. left hands are mirrored to right hands (u → S−1−u in the crop, x → −x in the corrected frame;
   every length, hence every metric, is unchanged); the original side is recorded;
4. root (middle MCP) and scale (MCP→PIP of the middle finger), 3-D keypoints
   ``(P − root) / scale``, 2-D keypoints in crop pixels;
5. a pool of at most ``max_points`` hand-surface points back-projected from the depth map,
   view-corrected, mirrored and normalised like the keypoints.

Frames that would give a wrong example raise :class:`SkipFrame`; the builders count and log
them instead of crashing a long build.
"""

from __future__ import annotations

import zlib

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from handvae.ops import camera, rotation, skeleton
from handvae.ops.image_warp import warp_perspective
from handvae.ops.view_crop import (  # noqa: F401 (re-exported: builders and tests use them)
    CROP_MARGIN,
    MIN_CROP_SIDE,
    crop_box,
    crop_homography,
    crop_intrinsics,
)

CROP_SIZE = 256          # stored crop side, pixels
MAX_POINTS = 4000        # surface points kept per example
MIN_HAND_POINTS = 32     # fewer valid hand depth points → the frame is skipped
NUM_KEYPOINTS = skeleton.NUM_JOINTS


class SkipFrame(ValueError):
    """A frame that cannot give a correct example (the message says why)."""


def _subsample_indices(count: int, max_count: int, key: str) -> np.ndarray:
    """Sorted indices of at most ``max_count`` of ``count`` items, fixed by ``key``."""
    if count <= max_count:
        return np.arange(count)
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    return np.sort(rng.choice(count, size=max_count, replace=False))


def process_frame(
    *,
    key: str,
    image: np.ndarray,
    K: np.ndarray,
    keypoints_3d: np.ndarray,
    hand_points: np.ndarray,
    hand_uv: np.ndarray,
    visible: np.ndarray | None = None,
    mirror: bool = False,
    crop_size: int = CROP_SIZE,
    max_points: int = MAX_POINTS,
) -> dict[str, np.ndarray]:
    """Turns one raw frame into a stored example.

    Args:
      key: the example's key (also seeds the point subsampling).
      image: [H, W, 3] uint8 colour image.
      K: [3, 3] colour-camera intrinsics, pixels.
      keypoints_3d: [21, 3] keypoints in RHD order, colour-camera frame, metres.
      hand_points: [P, 3] hand-surface points from depth, colour-camera frame, metres.
      hand_uv: [M, 2] colour-image pixels of the hand (for the crop box).
      visible: optional [21] visibility flags (default all visible).
      mirror: True for a left hand: mirror it into a right hand.
      crop_size: stored crop side S0, pixels.
      max_points: the most surface points kept.

    Returns:
      The example dict of the builders (``image`` [S0, S0, 3] uint8, ``keypoints_3d`` [21, 3],
      ``keypoints_2d`` [21, 2], ``visible`` [21], ``root`` [3] m, ``scale`` m, ``points``
      [P', 3], ``num_points``, ``K_crop`` [3, 3], ``view_rotation`` [3, 3]).

    Raises:
      SkipFrame: too few hand points, most keypoints outside the image, keypoints outside the
        crop, degenerate scale. Keypoints outside the image are kept, marked invisible.
    """
    image = np.asarray(image)
    height, width = image.shape[:2]
    keypoints_3d = np.asarray(keypoints_3d, np.float64)
    hand_points = np.asarray(hand_points, np.float64).reshape(-1, 3)
    if keypoints_3d.shape != (skeleton.NUM_JOINTS, 3):
        raise ValueError(f"{key}: keypoints_3d must be [21, 3], got {keypoints_3d.shape}")
    if len(hand_points) < MIN_HAND_POINTS:
        raise SkipFrame(f"{key}: only {len(hand_points)} hand depth points "
                        f"(< {MIN_HAND_POINTS})")
    if np.any(keypoints_3d[:, 2] <= 0):
        raise SkipFrame(f"{key}: a keypoint lies behind the camera")
    keypoints_uv = camera.project(keypoints_3d, K)
    inside = ((keypoints_uv >= -0.5) & (keypoints_uv <= [width - 0.5, height - 0.5])).all(-1)
    # A hand cut by the image border (common in real RHD frames) is kept with the cut keypoints
    # marked invisible, as hand3d's evaluation does; skipping such frames would make RHD/STB
    # figures incomparable with published ones. A frame whose annotation mostly misses the
    # picture cannot be trusted and is skipped.
    if (~inside).sum() > skeleton.NUM_JOINTS // 2:
        raise SkipFrame(f"{key}: keypoints {np.flatnonzero(~inside).tolist()} lie outside the "
                        f"{width}x{height} image")

    center, side = crop_box(hand_uv, keypoints_uv)
    view_rotation = rotation.view_correction_rotation(center, K)
    k_crop = crop_intrinsics(K, side, crop_size)
    crop = warp_perspective(image, crop_homography(K, view_rotation, k_crop), crop_size)

    keypoints_c = keypoints_3d @ view_rotation.T
    points_c = hand_points @ view_rotation.T
    if mirror:
        crop = crop[:, ::-1]
        keypoints_c[:, 0] *= -1
        points_c[:, 0] *= -1
    keypoints_2d = camera.project(keypoints_c, k_crop)
    if not ((keypoints_2d >= -0.5) & (keypoints_2d <= crop_size - 0.5)).all():
        raise SkipFrame(f"{key}: keypoints fall outside the {crop_size}px crop")

    normalized, root, scale = skeleton.normalize_pose(keypoints_c)
    if not scale > 1e-6:
        raise SkipFrame(f"{key}: degenerate reference bone (scale {scale:.3g} m)")
    points_c = points_c[_subsample_indices(len(points_c), max_points, key)]
    points = (points_c - root) / scale
    if visible is None:
        visible = np.ones(skeleton.NUM_JOINTS)
    visible = np.asarray(visible, np.float32).reshape(skeleton.NUM_JOINTS) * inside
    return {
        "image": np.ascontiguousarray(crop, dtype=np.uint8),
        "keypoints_3d": normalized.astype(np.float32),
        "keypoints_2d": keypoints_2d.astype(np.float32),
        "visible": np.asarray(visible, np.float32).reshape(skeleton.NUM_JOINTS),
        "root": root.astype(np.float32),
        "scale": np.float32(scale),
        "points": points.astype(np.float32),
        "num_points": np.int32(len(points)),
        "K_crop": k_crop.astype(np.float32),
        "view_rotation": view_rotation.astype(np.float32),
    }


def points_near_skeleton(points: np.ndarray, keypoints_3d: np.ndarray, radius: float
                         ) -> np.ndarray:
    """Which points lie within ``radius`` of a bone of the hand skeleton.

    Used to segment STB's hand (it ships no masks): a depth point belongs to the hand when it is
    within ``radius`` of one of the 20 bones (segments between joints, RHD order) or of the
    palm (segments wrist→MCPs are bones already; the palm is covered by the radius).

    Args:
      points: [P, 3] points, same frame and unit as ``keypoints_3d``.
      keypoints_3d: [21, 3] keypoints in RHD order.
      radius: distance threshold, same unit.

    Returns:
      [P] bool.
    """
    points = np.asarray(points, np.float64)
    bones = np.asarray(skeleton.BONES)
    a = np.asarray(keypoints_3d, np.float64)[bones[:, 0]]    # [20, 3]
    ab = np.asarray(keypoints_3d, np.float64)[bones[:, 1]] - a
    near = np.zeros(len(points), bool)
    for start, direction in zip(a, ab):
        t = np.clip((points - start) @ direction / max(direction @ direction, 1e-12), 0, 1)
        near |= np.sum((points - start - t[:, None] * direction) ** 2, -1) <= radius ** 2
    return near


FEATURE_DOC = {
    "image": "view-corrected colour crop, uint8 [256, 256, 3]; left hands mirrored to right",
    "keypoints_3d": "[21, 3] RHD order, view-corrected frame, (P − root) / scale",
    "keypoints_2d": "[21, 2] crop pixels (u, v), pixel centres at integers",
    "points": "[P ≤ 4000, 3] hand-surface points from depth, normalised like keypoints_3d",
    "K_crop": "[3, 3] intrinsics of the crop (principal point at its centre)",
    "view_rotation": "[3, 3] R: original camera frame → view-corrected frame (before mirroring)",
    "side": "0 left, 1 right: the side of the hand in the original frame",
}


def read_png(path: epath.Path) -> np.ndarray:
    """Decodes a PNG through epath; a corrupt or truncated file raises SkipFrame naming it."""
    try:
        with path.open("rb") as f:
            image = Image.open(f)
            image.load()
            return np.asarray(image)
    except FileNotFoundError as e:
        raise SkipFrame(f"missing file {path}") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise SkipFrame(f"corrupt or truncated PNG {path}: {e}") from e


def example_features(crop_size: int = CROP_SIZE) -> tfds.features.FeaturesDict:
    """The stored features of the RHD and STB builders (see ``FEATURE_DOC``)."""
    t = tfds.features.Tensor
    return tfds.features.FeaturesDict({
        "image": t(shape=(crop_size, crop_size, 3), dtype=np.uint8, encoding="zlib"),
        "keypoints_3d": t(shape=(NUM_KEYPOINTS, 3), dtype=np.float32),
        "keypoints_2d": t(shape=(NUM_KEYPOINTS, 2), dtype=np.float32),
        "visible": t(shape=(NUM_KEYPOINTS,), dtype=np.float32),
        "root": t(shape=(3,), dtype=np.float32),
        "scale": tfds.features.Scalar(dtype=np.float32),
        "points": t(shape=(None, 3), dtype=np.float32),
        "num_points": tfds.features.Scalar(dtype=np.int32),
        "K_crop": t(shape=(3, 3), dtype=np.float32),
        "view_rotation": t(shape=(3, 3), dtype=np.float32),
        "side": tfds.features.Scalar(dtype=np.int32),
        "frame": tfds.features.Text(),
    })
