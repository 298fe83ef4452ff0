"""A vectorised capsule renderer: depth, part mask, normals and Lambert shading.

The hand is a union of capsules (a segment with a radius) and flat slabs (a convex polygon
thickened to ±h, the palm's faces; capsules along its border round it off). Each primitive is
intersected with the camera rays of the pixels inside its projected bounding box only (numpy
over those pixels; a Python loop over the ~25 primitives), and a z-buffer keeps the nearest
hit. Camera conventions are ``handvae.ops.camera``'s: x right, y down, z forward, metres; the
pinhole camera sits at the origin, pixel centres at integer (u, v).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

NO_PART = -1
_NEAR_M = 0.02


@dataclasses.dataclass(frozen=True)
class Capsules:
    """A set of C capsules in the camera frame.

    Attributes:
      start: [C, 3] segment start points, metres.
      end: [C, 3] segment end points, metres.
      radius: [C] radii, metres.
      part_id: [C] integer label written into the mask where the capsule is nearest.
      albedo: [C, 3] diffuse colour in [0, 1].
    """
    start: np.ndarray
    end: np.ndarray
    radius: np.ndarray
    part_id: np.ndarray
    albedo: np.ndarray


@dataclasses.dataclass(frozen=True)
class Slab:
    """A convex planar polygon thickened to ``±half_thickness`` along its normal.

    Attributes:
      origin: [3] a point of the mid-plane, metres (camera frame).
      axes: [2, 3] orthonormal in-plane directions (u, v).
      normal: [3] unit normal, ``axes[0] × axes[1]``.
      polygon: [M, 2] convex polygon in (u, v) plane coordinates, counter-clockwise, metres.
      half_thickness: metres.
      part_id: label written into the mask.
      albedo: [3] diffuse colour in [0, 1].
    """
    origin: np.ndarray
    axes: np.ndarray
    normal: np.ndarray
    polygon: np.ndarray
    half_thickness: float
    part_id: int
    albedo: np.ndarray


def make_slab(points: np.ndarray, normal: np.ndarray, half_thickness: float, part_id: int,
              albedo: np.ndarray) -> Slab:
    """A :class:`Slab` over the convex hull of ``points`` [M, 3] projected on the plane through
    their mean with the given ``normal`` [3]."""
    normal = normal / np.linalg.norm(normal)
    origin = points.mean(axis=0)
    seed = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(normal, seed)
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    planar = (points - origin) @ np.stack([u, v]).T
    return Slab(origin=origin, axes=np.stack([u, v]), normal=np.cross(u, v),
                polygon=_convex_hull(planar), half_thickness=float(half_thickness),
                part_id=int(part_id), albedo=np.asarray(albedo, dtype=np.float64))


def _turn(o: tuple, a: tuple, b: tuple) -> float:
    """z of (a − o) × (b − o), > 0 for a counter-clockwise turn (NumPy 2.5 refuses 2-D cross)."""
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """[K, 2] counter-clockwise convex hull of [M, 2] points (Andrew's monotone chain)."""
    order = sorted(map(tuple, points))

    def half(sequence):
        chain = []
        for p in sequence:
            while len(chain) >= 2 and _turn(chain[-2], chain[-1], p) <= 0:
                chain.pop()
            chain.append(p)
        return chain

    lower, upper = half(order), half(order[::-1])
    return np.array(lower[:-1] + upper[:-1])


def intersect_slab(rays: np.ndarray, slab: Slab) -> tuple[np.ndarray, np.ndarray]:
    """Ray length to a slab's faces.

    Args:
      rays: [..., 3] unit directions from the origin.
      slab: the slab.

    Returns:
      (t [...] metres, inf on a miss; side [...] +1 or −1, the face hit: origin + side·h·n).
    """
    facing = rays @ slab.normal
    safe = np.where(np.abs(facing) < 1e-12, 1e-12, facing)
    base = slab.origin @ slab.normal
    best = np.full(rays.shape[:-1], np.inf)
    side = np.ones(rays.shape[:-1])
    polygon = slab.polygon
    edges = np.roll(polygon, -1, axis=0) - polygon
    for sign in (1.0, -1.0):
        t = (base + sign * slab.half_thickness) / safe
        local = (t[..., None] * rays - slab.origin) @ slab.axes.T        # [..., 2]
        relative = local[..., None, :] - polygon                           # [..., M, 2]
        cross = edges[:, 0] * relative[..., 1] - edges[:, 1] * relative[..., 0]
        inside = np.all(cross >= 0.0, axis=-1) & (t > 0.0)
        nearer = inside & (t < best)
        best = np.where(nearer, t, best)
        side = np.where(nearer, sign, side)
    return best, side


def transform(primitive: Capsules | Slab, rotation: np.ndarray, translation: np.ndarray
              ) -> Capsules | Slab:
    """The primitive moved by ``p → rotation p + translation`` (a rigid change of camera)."""
    if isinstance(primitive, Capsules):
        return dataclasses.replace(primitive, start=primitive.start @ rotation.T + translation,
                                   end=primitive.end @ rotation.T + translation)
    return dataclasses.replace(primitive, origin=rotation @ primitive.origin + translation,
                               axes=primitive.axes @ rotation.T,
                               normal=rotation @ primitive.normal)


@dataclasses.dataclass(frozen=True)
class Rendering:
    """What :func:`render_capsules` sees.

    Attributes:
      distance: [H, W] ray length to the nearest surface, metres (inf where nothing is hit).
      depth: [H, W] z of the nearest surface, metres (inf where nothing is hit).
      part_id: [H, W] int32 part label of the nearest capsule, ``NO_PART`` where none.
      normal: [H, W, 3] unit surface normal (zeros where nothing is hit).
      albedo: [H, W, 3] albedo of the nearest capsule (zeros where nothing is hit).
    """
    distance: np.ndarray
    depth: np.ndarray
    part_id: np.ndarray
    normal: np.ndarray
    albedo: np.ndarray


def ray_directions(K: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """[H, W, 3] unit ray directions through the pixel centres of a (height, width) image.

    The last few results are cached (fixed cameras such as STB's are reused every frame);
    the returned array is read-only.
    """
    K = np.asarray(K, dtype=np.float64)
    return _ray_directions(tuple(K.ravel().tolist()), tuple(image_size))


@functools.lru_cache(maxsize=4)
def _ray_directions(K: tuple[float, ...], image_size: tuple[int, int]) -> np.ndarray:
    height, width = image_size
    fx, _, cx, _, fy, cy = K[:6]
    x = ((np.arange(width) - cx) / fx)[None, :]
    y = ((np.arange(height) - cy) / fy)[:, None]
    inverse_norm = 1.0 / np.sqrt(x * x + y * y + 1.0)
    rays = np.empty((height, width, 3))
    rays[..., 0] = x * inverse_norm
    rays[..., 1] = y * inverse_norm
    rays[..., 2] = inverse_norm
    rays.flags.writeable = False
    return rays


def _bounding_box(start: np.ndarray, end: np.ndarray, radius: float, K: np.ndarray,
                  image_size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Pixel box (v0, v1, u0, u1), end-exclusive, holding the capsule's projection.

    The 8 corners of the capsule's 3-D axis-aligned box are projected; their 2-D box contains
    the capsule's image when all of them lie in front of the camera. Otherwise the whole image
    is returned (a capsule reaching behind the near plane is rare and still correct).
    """
    height, width = image_size
    low = np.minimum(start, end) - radius
    high = np.maximum(start, end) + radius
    if high[2] <= _NEAR_M:
        return None
    if low[2] <= _NEAR_M:
        return 0, height, 0, width
    corners = np.array(np.meshgrid([low[0], high[0]], [low[1], high[1]], [low[2], high[2]],
                                   indexing="ij")).reshape(3, -1).T
    uvw = corners @ K.T
    uv = uvw[:, :2] / uvw[:, 2:3]
    u0 = max(int(np.floor(uv[:, 0].min())), 0)
    u1 = min(int(np.ceil(uv[:, 0].max())) + 1, width)
    v0 = max(int(np.floor(uv[:, 1].min())), 0)
    v1 = min(int(np.ceil(uv[:, 1].max())) + 1, height)
    if u0 >= u1 or v0 >= v1:
        return None
    return v0, v1, u0, u1


def intersect_capsule(rays: np.ndarray, start: np.ndarray, end: np.ndarray, radius: float
                      ) -> np.ndarray:
    """Distance along unit rays from the origin to the first hit of one capsule.

    Args:
      rays: [..., 3] unit directions.
      start, end: [3] segment end points, metres.
      radius: capsule radius, metres.

    Returns:
      [...] ray length in metres to the nearest front-facing hit, inf on a miss.
    """
    axis = end - start
    to_origin = -start                     # origin − start
    axis_sq = axis @ axis
    axis_dot_ray = rays @ axis
    axis_dot_origin = axis @ to_origin
    ray_dot_origin = rays @ to_origin
    # Infinite cylinder about the axis: a t² + b t + c = 0 (scaled by |axis|²).
    a = np.maximum(axis_sq - axis_dot_ray ** 2, 1e-18)
    b = axis_sq * ray_dot_origin - axis_dot_origin * axis_dot_ray
    c = axis_sq * (to_origin @ to_origin) - axis_dot_origin ** 2 - radius ** 2 * axis_sq
    disc = b * b - a * c
    hit = disc >= 0.0
    t_body = (-b - np.sqrt(np.where(hit, disc, 0.0))) / a
    along = axis_dot_origin + t_body * axis_dot_ray
    on_body = hit & (along > 0.0) & (along < axis_sq)
    # Outside the segment's span the hit (if any) is on the sphere cap of that side.
    cap_offset_dot_ray = np.where(along <= 0.0, ray_dot_origin, rays @ (-end))
    cap_offset_sq = np.where(along <= 0.0, to_origin @ to_origin, end @ end)
    cap_disc = cap_offset_dot_ray ** 2 - (cap_offset_sq - radius ** 2)
    t_cap = -cap_offset_dot_ray - np.sqrt(np.maximum(cap_disc, 0.0))
    t = np.where(on_body, t_body, np.where(hit & (cap_disc > 0.0), t_cap, np.inf))
    return np.where(t > 0.0, t, np.inf)


def render_capsules(capsules: Capsules, K: np.ndarray, image_size: tuple[int, int],
                    rays: np.ndarray | None = None, slabs: tuple[Slab, ...] = ()
                    ) -> Rendering:
    """Z-buffered rendering of capsules and slabs.

    Args:
      capsules: C capsules in the camera frame.
      K: [3, 3] intrinsics.
      image_size: (height, width) in pixels.
      rays: optional precomputed :func:`ray_directions` for ``K`` and ``image_size``.
      slabs: flat solids (camera frame) rendered with the capsules.

    Returns:
      The :class:`Rendering` (distance, depth, part ids, normals, albedo), each [H, W, ...].
    """
    K = np.asarray(K, dtype=np.float64)
    height, width = image_size
    if rays is None:
        rays = ray_directions(K, image_size)
    if rays.shape != (height, width, 3):
        raise ValueError(f"rays must be [{height}, {width}, 3], got {rays.shape}")
    distance = np.full((height, width), np.inf)
    index = np.full((height, width), -1, dtype=np.int32)
    for c in range(len(capsules.radius)):
        start, end = capsules.start[c], capsules.end[c]
        box = _bounding_box(start, end, float(capsules.radius[c]), K, image_size)
        if box is None:
            continue
        v0, v1, u0, u1 = box
        t = intersect_capsule(rays[v0:v1, u0:u1], start, end, float(capsules.radius[c]))
        nearer = t < distance[v0:v1, u0:u1]
        distance[v0:v1, u0:u1] = np.where(nearer, t, distance[v0:v1, u0:u1])
        index[v0:v1, u0:u1] = np.where(nearer, c, index[v0:v1, u0:u1])
    num_capsules = len(capsules.radius)
    slab_side = np.ones((height, width))
    for k, slab in enumerate(slabs):
        corners = slab.origin + slab.polygon @ slab.axes
        box = _bounding_box(corners.min(axis=0), corners.max(axis=0), slab.half_thickness, K,
                            image_size)
        if box is None:
            continue
        v0, v1, u0, u1 = box
        t, side = intersect_slab(rays[v0:v1, u0:u1], slab)
        nearer = t < distance[v0:v1, u0:u1]
        distance[v0:v1, u0:u1] = np.where(nearer, t, distance[v0:v1, u0:u1])
        index[v0:v1, u0:u1] = np.where(nearer, num_capsules + k, index[v0:v1, u0:u1])
        slab_side[v0:v1, u0:u1] = np.where(nearer, side, slab_side[v0:v1, u0:u1])

    hit = index >= 0
    depth = np.where(hit, distance * rays[..., 2], np.inf)
    part_id = np.full((height, width), NO_PART, dtype=np.int32)
    normal = np.zeros((height, width, 3))
    albedo = np.zeros((height, width, 3))
    on_capsule = hit & (index < num_capsules)
    if on_capsule.any():
        which = index[on_capsule]
        points = distance[on_capsule][:, None] * rays[on_capsule]
        start, end = capsules.start[which], capsules.end[which]
        axis = end - start
        along = np.einsum("pi,pi->p", points - start, axis) / np.maximum(
            np.einsum("pi,pi->p", axis, axis), 1e-18)
        closest = start + np.clip(along, 0.0, 1.0)[:, None] * axis
        n = points - closest
        normal[on_capsule] = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
        part_id[on_capsule] = np.asarray(capsules.part_id)[which]
        albedo[on_capsule] = np.asarray(capsules.albedo)[which]
    for k, slab in enumerate(slabs):
        on_slab = index == num_capsules + k
        normal[on_slab] = slab_side[on_slab][:, None] * slab.normal
        part_id[on_slab] = slab.part_id
        albedo[on_slab] = slab.albedo
    return Rendering(distance=distance, depth=depth, part_id=part_id, normal=normal,
                     albedo=albedo)


def shade(normal: np.ndarray, rays: np.ndarray, albedo: np.ndarray,
          light_direction: np.ndarray, ambient: float = 0.35, diffuse: float = 0.65,
          specular: float = 0.08) -> np.ndarray:
    """Lambert shading with a faint Blinn–Phong highlight, for the P pixels that hit a surface.

    Args:
      normal: [P, 3] unit surface normals.
      rays: [P, 3] unit view rays of the same pixels.
      albedo: [P, 3] diffuse colours in [0, 1].
      light_direction: [3] unit vector from the surface towards the light (camera frame).

    Returns:
      [P, 3] colour in [0, 1].
    """
    lambert = np.clip(normal @ light_direction, 0.0, 1.0)
    half = light_direction[None, :] - rays
    half /= np.maximum(np.linalg.norm(half, axis=-1, keepdims=True), 1e-12)
    highlight = np.clip(np.einsum("pi,pi->p", normal, half), 0.0, 1.0) ** 24
    colour = albedo * (ambient + diffuse * lambert)[:, None] + specular * highlight[:, None]
    return np.clip(colour, 0.0, 1.0)
