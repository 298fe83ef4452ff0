"""A kinematic hand: shape, joint limits, a pose sampler and forward kinematics.

Keypoints come out in RHD's order (``handvae.ops.skeleton``): 0 wrist, then thumb, index,
middle, ring, little, each from tip to MCP (1–4, 5–8, 9–12, 13–16, 17–20).

The hand frame (a right hand; a left hand is its mirror image, x → −x):

* origin at the wrist, units metres;
* +y from the wrist towards the middle-finger MCP (distal);
* +x towards the thumb side (radial);
* +z = x × y, out of the palm (palmar). Flexion turns a finger from +y towards +z.

Angles are radians. Bone lengths are adult averages (index proximal/middle/distal phalanx
≈ 40/24/20 mm, palm ≈ 90 mm wrist→middle MCP) scaled by a per-hand factor.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Finger order of the pose arrays: thumb, index, middle, ring, little (RHD's finger order).
NUM_FINGERS = 5
FINGERS_RHD = ("thumb", "index", "middle", "ring", "little")
# MCP (thumb: CMC) positions in the right-hand frame, metres.
_BASE_POSITIONS = np.array([
    [0.022, 0.024, 0.010],   # thumb CMC
    [0.024, 0.086, 0.000],   # index MCP
    [0.002, 0.090, 0.000],   # middle MCP
    [-0.018, 0.085, 0.000],  # ring MCP
    [-0.036, 0.075, 0.000],  # little MCP
])
# Phalanx lengths (base→next joint, next→next, last→tip), metres.
_BONE_LENGTHS = np.array([
    [0.042, 0.032, 0.028],
    [0.042, 0.025, 0.021],
    [0.046, 0.029, 0.022],
    [0.043, 0.027, 0.021],
    [0.034, 0.020, 0.019],
])
# Capsule radius of each phalanx, metres.
_BONE_RADII = np.array([
    [0.0115, 0.0100, 0.0090],
    [0.0095, 0.0085, 0.0078],
    [0.0098, 0.0088, 0.0080],
    [0.0092, 0.0082, 0.0075],
    [0.0082, 0.0074, 0.0068],
])
# Rest splay of each finger about +z (radians; negative turns +y towards +x, the thumb side).
_REST_SPLAY = np.radians([0.0, -5.0, 0.0, 5.0, 10.0])
# Abduction is "spread away from the middle finger" when positive: the index turns towards
# the thumb side (−z rotation), ring and little towards the ulnar side; for the thumb it
# opens the thumb away from the palm's radial border.
_SPREAD_SIGN = np.array([1.0, -1.0, 1.0, 1.0, 1.0])
# The thumb's rest direction and flexion direction in the hand frame (before splay).
_THUMB_REST_DIRECTION = np.array([0.62, 0.72, 0.30])
_THUMB_FLEX_DIRECTION = np.array([-0.75, 0.0, 0.66])

# Joint limits, radians: [finger, dof] with dofs (base abduction, base flexion, middle
# flexion, distal flexion). Negative flexion is hyper-extension.
LIMITS_LOW = np.radians(np.array([
    [-20.0, -15.0, -10.0, -15.0],
    [-20.0, -20.0, 0.0, -5.0],
    [-12.0, -20.0, 0.0, -5.0],
    [-15.0, -20.0, 0.0, -5.0],
    [-20.0, -20.0, 0.0, -5.0],
]))
LIMITS_HIGH = np.radians(np.array([
    [35.0, 50.0, 60.0, 85.0],
    [20.0, 90.0, 110.0, 80.0],
    [12.0, 90.0, 110.0, 80.0],
    [15.0, 90.0, 115.0, 80.0],
    [20.0, 90.0, 115.0, 80.0],
]))
POSE_KINDS = ("open", "fist", "pinch", "point", "random")


@dataclasses.dataclass(frozen=True)
class HandShape:
    """Per-hand geometry (right-hand frame, metres).

    Attributes:
      base_positions: [5, 3] MCP (thumb: CMC) positions.
      bone_lengths: [5, 3] phalanx lengths, base to tip.
      bone_radii: [5, 3] capsule radii of the phalanges.
      scale: the factor applied to the average hand (1.0 = average adult).
    """
    base_positions: np.ndarray
    bone_lengths: np.ndarray
    bone_radii: np.ndarray
    scale: float


def sample_shape(rng: np.random.Generator, scale_range: tuple[float, float] = (0.85, 1.15)
                 ) -> HandShape:
    """Samples a hand: a global scale plus a few per-bone percent of jitter."""
    scale = float(rng.uniform(*scale_range))
    length_jitter = rng.uniform(0.94, 1.06, size=_BONE_LENGTHS.shape)
    radius_jitter = rng.uniform(0.9, 1.1) * rng.uniform(0.95, 1.05, size=_BONE_RADII.shape)
    base_jitter = rng.normal(0.0, 0.002, size=_BASE_POSITIONS.shape)
    return HandShape(base_positions=scale * (_BASE_POSITIONS + base_jitter),
                     bone_lengths=scale * _BONE_LENGTHS * length_jitter,
                     bone_radii=scale * _BONE_RADII * radius_jitter,
                     scale=scale)


def _uniform(rng: np.random.Generator, low: np.ndarray, high: np.ndarray,
             fraction: tuple[float, float]) -> np.ndarray:
    """Uniform draw in the sub-range [low + f0 (high − low), low + f1 (high − low)]."""
    span = high - low
    return rng.uniform(low + fraction[0] * span, low + fraction[1] * span)


def sample_pose(rng: np.random.Generator, kind: str | None = None,
                shape: HandShape | None = None, pinch_candidates: int = 48) -> np.ndarray:
    """Samples joint angles of one of :data:`POSE_KINDS` (or a random kind).

    Abduction (column 0) is positive when a finger spreads away from the middle finger.

    Args:
      rng: the generator.
      kind: "open", "fist", "pinch", "point", "random", or None for a random kind
        (random in-limit poses half the time, each named kind an eighth).
      shape: the hand; with it a pinch closes the thumb on the index tip (the best of
        ``pinch_candidates`` random thumb poses), without it the thumb pose is only typical.

    Returns:
      [5, 4] angles in radians (finger × (abduction, base, middle, distal flexion)), within
      :data:`LIMITS_LOW`/:data:`LIMITS_HIGH`.
    """
    if kind is None:
        kind = str(rng.choice(POSE_KINDS, p=[0.125, 0.125, 0.125, 0.125, 0.5]))
    if kind not in POSE_KINDS:
        raise ValueError(f"kind must be one of {POSE_KINDS} or None, got {kind!r}")
    lo, hi = LIMITS_LOW, LIMITS_HIGH
    if kind == "random":
        angles = rng.uniform(lo, hi)
        # Distal flexion follows the middle joint in real fingers (about 2/3 of it).
        angles[1:, 3] = np.clip(angles[1:, 2] * rng.uniform(0.4, 0.9, 4), lo[1:, 3], hi[1:, 3])
    elif kind == "open":
        angles = _uniform(rng, lo, hi, (0.0, 0.3))
        angles[:, 0] = _uniform(rng, lo[:, 0], hi[:, 0], (0.5, 1.0))  # spread
    elif kind == "fist":
        angles = _uniform(rng, lo, hi, (0.75, 1.0))
        angles[1:, 0] = _uniform(rng, lo[1:, 0], hi[1:, 0], (0.4, 0.6))
        angles[0] = _uniform(rng, lo[0], hi[0], (0.5, 0.9))
    elif kind == "pinch":
        angles = _uniform(rng, lo, hi, (0.0, 0.9))
        angles[0] = _uniform(rng, lo[0], hi[0], (0.55, 0.8))
        angles[0, 0] = _uniform(rng, lo[0, 0], hi[0, 0], (0.7, 0.95))
        angles[1] = _uniform(rng, lo[1], hi[1], (0.35, 0.55))
        angles[1, 0] = _uniform(rng, lo[1, 0], hi[1, 0], (0.4, 0.6))
        if shape is not None:
            index_tip = _finger_chain(shape, angles[1], 1)[-1]
            candidates = rng.uniform(lo[0], hi[0], size=(max(pinch_candidates, 1), 4))
            gaps = [np.linalg.norm(_finger_chain(shape, c, 0)[-1] - index_tip)
                    for c in candidates]
            angles[0] = candidates[int(np.argmin(gaps))]
    else:  # point: index straight, the rest curled
        angles = _uniform(rng, lo, hi, (0.75, 1.0))
        angles[1] = _uniform(rng, lo[1], hi[1], (0.1, 0.25))
        angles[1:, 0] = _uniform(rng, lo[1:, 0], hi[1:, 0], (0.4, 0.6))
        angles[0] = _uniform(rng, lo[0], hi[0], (0.4, 0.9))
    return np.clip(angles, lo, hi)


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """[3, 3] rotation by ``angle`` radians about the unit ``axis``."""
    kx = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]],
                   [-axis[1], axis[0], 0.0]])
    return np.eye(3) + np.sin(angle) * kx + (1.0 - np.cos(angle)) * kx @ kx


def _finger_frame(finger: int) -> np.ndarray:
    """[3, 3] columns (flexion axis x, rest direction y, flexion direction z) of a finger."""
    if finger == 0:
        y = _THUMB_REST_DIRECTION / np.linalg.norm(_THUMB_REST_DIRECTION)
        z = _THUMB_FLEX_DIRECTION - np.dot(_THUMB_FLEX_DIRECTION, y) * y
        z /= np.linalg.norm(z)
        return np.stack([np.cross(y, z), y, z], axis=1)
    return _rotation(np.array([0.0, 0.0, 1.0]), _REST_SPLAY[finger])


def _finger_chain(shape: HandShape, finger_angles: np.ndarray, finger: int) -> np.ndarray:
    """[4, 3] right-hand-frame positions base → tip of one finger (metres)."""
    frame = _finger_frame(finger)
    # Abduction about the flexion direction (the palm normal for fingers), then flexion.
    orient = frame @ _rotation(np.array([0.0, 0.0, 1.0]),
                               _SPREAD_SIGN[finger] * finger_angles[0])
    position = shape.base_positions[finger].copy()
    chain = [position]
    for k in range(3):
        orient = orient @ _rotation(np.array([1.0, 0.0, 0.0]), finger_angles[1 + k])
        position = position + orient[:, 1] * shape.bone_lengths[finger, k]
        chain.append(position)
    return np.stack(chain)


def forward_kinematics(shape: HandShape, angles: np.ndarray, side: str = "right"
                       ) -> np.ndarray:
    """Keypoints of a posed hand in its own frame.

    Args:
      shape: the hand's geometry.
      angles: [5, 4] joint angles, radians (see :func:`sample_pose`).
      side: "right" or "left" (the left hand mirrors x).

    Returns:
      [21, 3] keypoints in RHD order, metres, in the hand frame.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    angles = np.asarray(angles, dtype=np.float64)
    if angles.shape != (NUM_FINGERS, 4):
        raise ValueError(f"angles must be [5, 4], got {angles.shape}")
    keypoints = np.zeros((21, 3))
    for finger in range(NUM_FINGERS):
        chain = _finger_chain(shape, angles[finger], finger)
        # RHD order within a finger: tip, DIP, PIP, MCP → indices 4f+1 .. 4f+4.
        keypoints[4 * finger + 1: 4 * finger + 5] = chain[::-1]
    if side == "left":
        keypoints[:, 0] *= -1.0
    return keypoints


def random_orientation(rng: np.random.Generator, max_tilt_deg: float = 60.0,
                       back_facing_probability: float = 0.35) -> np.ndarray:
    """A hand→camera rotation with the palm (or the back) roughly facing the camera.

    The reference orientation has the fingers up (camera −y) and the palm towards the camera
    (palm normal +z_hand → camera −z). It is turned about the camera z axis (any roll), tilted
    about x and y by up to ``max_tilt_deg``, and flipped to show the back of the hand with
    ``back_facing_probability``.

    Returns:
      [3, 3] rotation R with ``p_camera = R @ p_hand``.
    """
    reference = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
    if rng.uniform() < back_facing_probability:
        reference = _rotation(np.array([0.0, 1.0, 0.0]), np.pi) @ reference
    tilt = np.radians(max_tilt_deg)
    pitch = _rotation(np.array([1.0, 0.0, 0.0]), rng.uniform(-tilt, tilt))
    yaw = _rotation(np.array([0.0, 1.0, 0.0]), rng.uniform(-tilt, tilt))
    roll = _rotation(np.array([0.0, 0.0, 1.0]), rng.uniform(-np.pi, np.pi))
    return roll @ pitch @ yaw @ reference


def palm_outline(shape: HandShape, side: str = "right") -> np.ndarray:
    """[4, 3] wrist-side corners of the palm (ulnar, radial) and two mid-palm points, hand frame.

    Used to fill the palm with capsules between the wrist and the MCPs.
    """
    s = shape.scale
    points = np.array([[-0.026, 0.008, 0.0], [0.018, 0.008, 0.002],
                       [-0.022, 0.045, 0.001], [0.012, 0.045, 0.003]]) * s
    if side == "left":
        points[:, 0] *= -1.0
    return points
