"""One synthetic frame: a posed hand placed in front of a camera, rendered over a background.

Internal part labels (the writers map them to each data set's mask ids):
``3 · finger + k`` for the phalanges (finger 0 thumb … 4 little; k = 0 distal, 1 middle,
2 proximal, i.e. tip to palm), :data:`PART_PALM` for the palm and :data:`PART_BODY` for the
forearm.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_prep.synthetic import background, hand, render
from handvae.ops import camera

PALM_HALF_THICKNESS = 0.0115  # metres, for an average hand (scale 1)
FOREARM_RADIUS = 0.025
PART_PALM = 15
PART_BODY = 16
NUM_HAND_PARTS = 16  # phalanges and palm; the body is not part of the hand
# A keypoint counts as visible when the surface seen at its pixel is no more than its capsule
# radius plus this slack in front of it (anything nearer occludes it).
VISIBILITY_SLACK_M = 0.004
# Skin albedos (sRGB in [0, 1]) from light to dark; each frame jitters one of them.
SKIN_TONES = np.array([
    [0.96, 0.80, 0.69], [0.92, 0.72, 0.58], [0.84, 0.62, 0.47],
    [0.72, 0.50, 0.36], [0.56, 0.38, 0.26], [0.40, 0.27, 0.18],
])


@dataclasses.dataclass(frozen=True)
class HandFrame:
    """A rendered frame with its annotation.

    Attributes:
      rgb: [H, W, 3] uint8 colour image.
      depth: [H, W] float64 depth (z) in metres, background included (finite everywhere).
      part_id: [H, W] int32 internal part label, ``render.NO_PART`` on the background.
      keypoints: [21, 3] float64 camera-frame keypoints in RHD order, metres.
      uv: [21, 2] float64 pixel projections of ``keypoints`` with ``K``.
      visible: [21] bool, inside the image and not occluded.
      keypoint_radius: [21] float64 capsule radius at each keypoint, metres.
      side: "left" or "right".
      K: [3, 3] intrinsics used.
    """
    rgb: np.ndarray
    depth: np.ndarray
    part_id: np.ndarray
    keypoints: np.ndarray
    uv: np.ndarray
    visible: np.ndarray
    keypoint_radius: np.ndarray
    side: str
    K: np.ndarray


def keypoint_radii(shape: hand.HandShape) -> np.ndarray:
    """[21] radius of the solid around each keypoint (the thickest part that meets there), m."""
    radii = np.zeros(21)
    radii[0] = FOREARM_RADIUS * shape.scale  # the wrist sits where the forearm starts
    for finger in range(hand.NUM_FINGERS):
        proximal, middle, distal = shape.bone_radii[finger]
        base = proximal if finger == 0 else max(proximal, PALM_HALF_THICKNESS * shape.scale)
        radii[4 * finger + 1: 4 * finger + 5] = [distal, max(distal, middle),
                                                  max(middle, proximal), base]
    return radii


def _hand_primitives_local(shape: hand.HandShape, keypoints: np.ndarray, side: str,
                           forearm_length: float
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                      np.ndarray, float]:
    """The solids of a posed hand in its own frame.

    Returns:
      (capsule starts [C, 3], ends [C, 3], radii [C], parts [C], palm polygon points [M, 3],
      palm half thickness): phalanges, the palm's rounded border and the thenar as capsules,
      the forearm as a capsule; the palm's faces as a slab over the polygon.
    """
    starts, ends, radii, parts = [], [], [], []

    def add(a, b, r, part):
        starts.append(a)
        ends.append(b)
        radii.append(r)
        parts.append(part)

    for finger in range(hand.NUM_FINGERS):
        # keypoints of the finger, tip → base: 4f+1 .. 4f+4; phalanx k (0 distal) joins
        # 4f+1+k and 4f+2+k.
        for k in range(3):
            add(keypoints[4 * finger + 2 + k], keypoints[4 * finger + 1 + k],
                shape.bone_radii[finger, 2 - k], 3 * finger + k)
    s = shape.scale
    wrist = keypoints[0]
    ulnar, radial, mid_ulnar, mid_radial = hand.palm_outline(shape, side)
    mcp = {name: keypoints[4 * f + 4] for f, name in enumerate(hand.FINGERS_RHD)}
    palm_half_thickness = PALM_HALF_THICKNESS * s
    border = [ulnar, radial, mcp["index"], mcp["middle"], mcp["ring"], mcp["little"]]
    for a, b in zip(border, border[1:] + border[:1]):
        add(a, b, palm_half_thickness, PART_PALM)
    thumb_base = keypoints[4]
    add(thumb_base, radial, 0.013 * s, PART_PALM)
    add(thumb_base, mid_radial, 0.012 * s, PART_PALM)
    add(thumb_base, mcp["index"], 0.008 * s, PART_PALM)
    # The forearm continues from the wrist away from the fingers.
    elbow_side = wrist + np.array([0.0, -forearm_length, 0.0])
    add(wrist + np.array([0.0, -0.015 * s, 0.0]), elbow_side, FOREARM_RADIUS * s, PART_BODY)
    polygon = np.array(border + [mid_ulnar, mid_radial])
    return (np.array(starts), np.array(ends), np.array(radii), np.array(parts, np.int32),
            polygon, palm_half_thickness)


def place_hand(rng: np.random.Generator, keypoints_local: np.ndarray, K: np.ndarray,
               image_size: tuple[int, int], depth_range: tuple[float, float] = (0.3, 0.8),
               margin_px: float = 4.0, attempts: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Random rotation and translation that keep all 21 keypoints inside the image.

    The hand's centre (mean keypoint) lies at a depth drawn from ``depth_range`` (metres) and
    projects to a random pixel; both are redrawn until every keypoint falls inside the image
    with ``margin_px``. After ``attempts`` the hand is centred at the far end of the range.

    Returns:
      (R [3, 3], t [3]) with ``p_camera = R p_hand + t``.
    """
    height, width = image_size
    centre = keypoints_local.mean(axis=0)
    for attempt in range(attempts + 1):
        rotation = hand.random_orientation(rng)
        if attempt < attempts:
            depth = rng.uniform(*depth_range)
            target = rng.uniform([0.2 * width, 0.2 * height], [0.8 * width, 0.8 * height])
        else:
            depth = depth_range[1]
            target = np.array([K[0, 2], K[1, 2]])
        translation = camera.unproject(target, np.asarray(depth), K) - rotation @ centre
        uv = camera.project(keypoints_local @ rotation.T + translation, K)
        inside = ((uv >= margin_px) & (uv <= [width - 1 - margin_px, height - 1 - margin_px]))
        if inside.all():
            break
    return rotation, translation


def render_hand_frame(rng: np.random.Generator, K: np.ndarray, image_size: tuple[int, int],
                      side: str, background_range: tuple[float, float],
                      plain: bool = False, rays: np.ndarray | None = None,
                      return_scene: bool = False):
    """Samples, places and renders one hand.

    Args:
      rng: the frame's generator (everything random is drawn from it).
      K: [3, 3] intrinsics.
      image_size: (height, width).
      side: "left" or "right".
      background_range: (near, far) metres of the background plane.
      plain: smooth background and no sensor noise (small PNGs, for dummy data).
      rays: optional precomputed :func:`render.ray_directions`.
      return_scene: also return the camera-frame solids and the background plane.

    Returns:
      The :class:`HandFrame`; with ``return_scene``, ``(frame, (capsules, slabs),
      (normal, offset))`` where the background is the plane ``normal·p = offset`` (metres,
      camera frame).
    """
    shape = hand.sample_shape(rng)
    angles = hand.sample_pose(rng, shape=shape)
    local = hand.forward_kinematics(shape, angles, side)
    rotation, translation = place_hand(rng, local, K, image_size)
    keypoints = local @ rotation.T + translation
    start, end, radius, part, palm, palm_half = _hand_primitives_local(
        shape, local, side, forearm_length=rng.uniform(0.06, 0.2))
    tone = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.92, 1.05, 3)
    albedo = np.clip(tone * rng.uniform(0.96, 1.04, (len(radius), 1)), 0.0, 1.0)
    if rng.uniform() < 0.5:  # a sleeve
        albedo[part == PART_BODY] = rng.uniform(0.05, 0.9, 3)
    capsules = render.Capsules(start=start @ rotation.T + translation,
                               end=end @ rotation.T + translation, radius=radius,
                               part_id=part, albedo=albedo)
    palm_albedo = albedo[part == PART_PALM][0]
    slabs = (render.make_slab(palm @ rotation.T + translation, rotation[:, 2], palm_half,
                              PART_PALM, palm_albedo),)
    if rays is None:
        rays = render.ray_directions(K, image_size)
    rendering = render.render_capsules(capsules, K, image_size, rays=rays, slabs=slabs)
    light = np.array([rng.normal(0.0, 0.6), rng.normal(0.0, 0.6), -1.0])
    light /= np.linalg.norm(light)
    ambient = rng.uniform(0.25, 0.45)
    backdrop = background.procedural_background(rng, image_size, plain=plain)
    plane = background.random_plane(rng, background_range)
    background_depth = background.plane_depth_from(*plane, K, image_size)
    on_hand = rendering.depth < background_depth
    colour = backdrop.copy()
    colour[on_hand] = render.shade(rendering.normal[on_hand], rays[on_hand],
                                   rendering.albedo[on_hand], light, ambient=ambient)
    gain, offset = rng.uniform(0.85, 1.15), rng.uniform(-0.05, 0.05)
    colour = colour * np.float32(gain) + np.float32(offset)
    if not plain:
        sigma = np.float32(rng.uniform(0.5, 4.0) / 255.0)
        colour += sigma * rng.standard_normal(colour.shape, dtype=np.float32)
    rgb = np.clip(np.round(colour * 255.0), 0, 255).astype(np.uint8)
    depth = np.where(on_hand, rendering.depth, background_depth)
    part_id = np.where(on_hand, rendering.part_id, render.NO_PART).astype(np.int32)

    uv = camera.project(keypoints, K)
    radii = keypoint_radii(shape)
    visible = keypoint_visibility(uv, keypoints[:, 2], radii, depth)
    frame = HandFrame(rgb=rgb, depth=depth, part_id=part_id, keypoints=keypoints, uv=uv,
                      visible=visible, keypoint_radius=radii, side=side,
                      K=np.asarray(K, np.float64))
    if return_scene:
        return frame, (capsules, slabs), plane
    return frame


def keypoint_visibility(uv: np.ndarray, keypoint_depth: np.ndarray, radius: np.ndarray,
                        depth: np.ndarray) -> np.ndarray:
    """[J] bool: inside the image and the surface at the keypoint's pixel is not nearer than
    ``keypoint depth − radius − VISIBILITY_SLACK_M`` (metres)."""
    height, width = depth.shape
    pixel = np.round(uv).astype(np.int64)
    inside = ((pixel[:, 0] >= 0) & (pixel[:, 0] < width) & (pixel[:, 1] >= 0)
              & (pixel[:, 1] < height))
    u = np.clip(pixel[:, 0], 0, width - 1)
    v = np.clip(pixel[:, 1], 0, height - 1)
    seen = depth[v, u]
    return inside & (seen >= keypoint_depth - radius - VISIBILITY_SLACK_M)


def offscreen_hand(rng: np.random.Generator, K: np.ndarray, image_size: tuple[int, int],
                   side: str) -> np.ndarray:
    """[21, 3] keypoints (metres) of a second hand placed wholly outside the image.

    RHD always annotates both hands; a frame of this generator shows one, so the other is put
    beside the field of view (its keypoints then project outside the image, invisible).
    """
    height, width = image_size
    shape = hand.sample_shape(rng)
    local = hand.forward_kinematics(shape, hand.sample_pose(rng, shape=shape), side)
    rotation = hand.random_orientation(rng)
    depth = rng.uniform(0.3, 0.8)
    # Hand-sized extents (~0.25 m) beyond the left or right border, at a random height.
    u = -0.5 * width if side == "right" else 1.5 * width
    target = np.array([u, rng.uniform(0.0, height)])
    centre = camera.unproject(target, np.asarray(depth), K)
    offset = np.array([0.3 if u > width else -0.3, 0.0, 0.0])
    keypoints = local @ rotation.T - rotation @ local.mean(axis=0) + centre + offset
    return keypoints
