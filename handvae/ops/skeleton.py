"""Hand skeleton conventions: joint order, STB→RHD mapping, root and scale.

All of handvae works in RHD's joint order (Zimmermann & Brox, ICCV 2017)::

    0 wrist
    1-4   thumb   tip → MCP      (1 tip, 2 DIP/IP, 3 PIP/MCP, 4 MCP/CMC)
    5-8   index   tip → MCP
    9-12  middle  tip → MCP
    13-16 ring    tip → MCP
    17-20 little  tip → MCP

STB (Zhang et al., ICIP 2017) stores ``handPara`` [3, 21, N] in millimetres in its own order:
0 palm centre, then little, ring, middle, index, thumb, each from MCP (``_01``) to tip
(``_04``); the joint names are listed in the STB loaders of Ge et al. (CVPR 2019,
``hand_shape_pose``) and Yang et al. (``bihand``). ``STB_TO_RHD`` reorders it, and
``stb_palm_to_wrist`` moves STB's palm centre to a wrist as Ge et al. (CVPR 2019) do for their
RHD/STB comparison: ``wrist = ring_mcp + 2 (palm − ring_mcp)``.

The root is the middle-finger MCP (joint 12) as in Yang et al. (ICCV 2019); the scale is the
length of the middle finger's first bone (MCP→PIP, joints 12→11), the reference bone of
hand3d's evaluation and of Ge et al.
"""

from __future__ import annotations

import numpy as np

NUM_JOINTS = 21
WRIST = 0
ROOT_JOINT = 12  # middle-finger MCP
SCALE_BONE = (12, 11)  # middle-finger MCP → PIP

JOINT_NAMES = (
    "wrist",
    "thumb_tip", "thumb_dip", "thumb_pip", "thumb_mcp",
    "index_tip", "index_dip", "index_pip", "index_mcp",
    "middle_tip", "middle_dip", "middle_pip", "middle_mcp",
    "ring_tip", "ring_dip", "ring_pip", "ring_mcp",
    "little_tip", "little_dip", "little_pip", "little_mcp",
)
FINGERS = ("thumb", "index", "middle", "ring", "little")

# Bones as (parent, child) pairs in RHD order, parent nearer the wrist.
BONES = tuple(
    [(0, 4 * f + 4) for f in range(5)]
    + [(4 * f + 4 - k, 4 * f + 3 - k) for f in range(5) for k in range(3)]
)

STB_JOINT_NAMES = (
    "palm",
    "little_mcp", "little_pip", "little_dip", "little_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "thumb_mcp", "thumb_pip", "thumb_dip", "thumb_tip",
)
# rhd[..., j, :] = stb[..., STB_TO_RHD[j], :]
STB_TO_RHD = np.array([0] + list(range(20, 0, -1)), dtype=np.int32)
# stb[..., i, :] = rhd[..., RHD_TO_STB[i], :]  (the same permutation: it is an involution)
RHD_TO_STB = np.argsort(STB_TO_RHD).astype(np.int32)
STB_PALM_TO_WRIST_FACTOR = 2.0
_RING_MCP = 16


def stb_palm_to_wrist(keypoints_rhd_order: np.ndarray) -> np.ndarray:
    """Replaces STB's palm-centre keypoint (slot 0) by a wrist estimate.

    Args:
      keypoints_rhd_order: [..., 21, 3] keypoints already in RHD order with STB's palm centre
        at index 0; any unit.

    Returns:
      [..., 21, 3] copy whose joint 0 is ``ring_mcp + 2 (palm − ring_mcp)`` (Ge et al. 2019).
    """
    out = np.array(keypoints_rhd_order, copy=True)
    ring = out[..., _RING_MCP, :]
    out[..., WRIST, :] = ring + STB_PALM_TO_WRIST_FACTOR * (out[..., WRIST, :] - ring)
    return out


def wrist_to_stb_palm(keypoints_rhd_order: np.ndarray) -> np.ndarray:
    """Inverse of :func:`stb_palm_to_wrist`: [..., 21, 3] with a wrist → STB's palm centre."""
    out = np.array(keypoints_rhd_order, copy=True)
    ring = out[..., _RING_MCP, :]
    out[..., WRIST, :] = ring + (out[..., WRIST, :] - ring) / STB_PALM_TO_WRIST_FACTOR
    return out


def root_and_scale(keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Root position and reference bone length of hands in RHD order.

    Args:
      keypoints: [..., 21, 3], any length unit.

    Returns:
      root [..., 3] (the middle-finger MCP) and scale [...] (‖P12 − P11‖), same unit.
    """
    keypoints = np.asarray(keypoints)
    if keypoints.shape[-2:] != (NUM_JOINTS, 3):
        raise ValueError(f"keypoints must be [..., 21, 3], got {keypoints.shape}")
    root = keypoints[..., ROOT_JOINT, :]
    scale = np.linalg.norm(keypoints[..., SCALE_BONE[0], :] - keypoints[..., SCALE_BONE[1], :],
                           axis=-1)
    return root, scale


def normalize_pose(keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Root-relative, scale-normalised pose: ``(P − root) / scale``.

    Args:
      keypoints: [..., 21, 3] in metres.

    Returns:
      (normalised [..., 21, 3] unitless, root [..., 3] metres, scale [...] metres).
    """
    root, scale = root_and_scale(keypoints)
    return (keypoints - root[..., None, :]) / scale[..., None, None], root, scale


def denormalize_pose(normalized: np.ndarray, root: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Inverse of :func:`normalize_pose`: [..., 21, 3] unitless → metres."""
    return normalized * np.asarray(scale)[..., None, None] + np.asarray(root)[..., None, :]
