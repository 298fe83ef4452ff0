"""The per-step input work on the device: the augmentation warp, hue, heat maps, point sample.

The host path (:func:`handvae.data.pipeline.example_to_features`) warps, turns the hue,
renders heat maps and samples points per row in numpy/Pillow on the host's cores. With
``data.augment_on = "device"`` the host only gathers raw rows
(:func:`handvae.data.pipeline.example_to_raw`: the uint8 context window and the labels the
decoded cache stores, ``handvae.data.decoded_cache``) and the jitted train step runs
:func:`make_batch_fn`'s function on them first (``handvae.training.step.make_train_step``'s
``prepare_batch``), in jnp, vmapped over rows and split over the mesh like the rest of the step.

The geometry is the host's, written once: :func:`handvae.data.augment.crop_transform`,
``hue_rotation_matrix``, :func:`handvae.data.heatmaps.keypoint_heatmaps`,
``handvae.ops.rotation.rotation_about_z`` and ``image_warp.apply_affine`` take an array
module (``xp=jnp`` here, numpy in float64 on the host). What is device-only:

* :func:`warp_bilinear`, Pillow's ``Image.transform(AFFINE, BILINEAR)`` as a gather (the host
  renders with it, ``handvae.ops.image_warp``): the source position of output pixel centre
  (u', v') is ``A⁻¹ (u', v', 1)``; a position outside ``[−½, W − ½)²`` is black; inside, the
  4 neighbours (indices clamped to the image) are blended bilinearly and the value is
  truncated to an integer (Pillow's ``(UINT8) v``, not rounded).
* :func:`adjust_hue`, Pillow's ``convert("RGB", matrix)``: ``⌊M·rgb + ½⌋`` clipped to
  [0, 255], in float32.
* :func:`sample_params`, the draws: ``jax.random`` keyed by ``(seed, step, row)``
  (:func:`row_keys`; the step is the train state's, so a resumed run draws exactly what an
  uninterrupted one draws). The ranges are the host's (``augment.SCALE_RANGE``, …); the
  values differ from the host's numpy draws (another generator), so the two paths are two
  different, equally valid random streams. The cloud takes N of the row's P pool points
  without replacement (the N smallest of P uniform keys), with replacement when P < N
  (``cloud_resampled`` = 1), zeros when P = 0, as on the host.

Equality with the host (``tests/data/test_data_device_augment.py``): given the same draws
(:func:`features` with :class:`Params`), pose, root, scale, visible and cloud equal the host's
to float32 rounding (1e-5), keypoints to 1e-3 px and heat maps to 1e-4; the image is the
host's exactly except where the float32 sample position (float64 on the host) puts the
bilinear value on the other side of an integer, which truncation turns into one level
(1/255 before normalisation, 0.0175 after): at most 1 level, in under 1 % of the values.

Choosing the path (:func:`resolve_augment_on`, ``data.augment_on``): "host", "device" (needs
``data.decoded_cache=True``, else a ValueError says so), or "auto": the device on GPU and TPU
when the decoded cache is on, the host on CPU. On CPU both paths share the same 2 cores:
``python benchmarks/trainer_rate.py --data_dir /tmp/x/tfds --cache_dir DIR --interleave
--steps 10 --repeats 2`` (cpu scale, 285 synthetic frames, one process, paths in alternating
rounds, 20 timed steps each, load 5.9-7.1 on 2 shared cores) gave the device path 1.06× the
host path's trainer rate for R2P (2.83 vs 2.67 steps/s) and 0.95× for S4 (0.76 vs 0.80):
no gain beyond the noise, so CPU keeps the host path (which needs no cache)
(``benchmarks/figures/cpu_2026-12-07/trainer_rate_device_augment.json``). GPU/TPU
figures are still to be measured; there the device path takes ~6 ms of host work per row
off the host (issue 26), hence ``auto`` = device.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from handvae.data import augment as augment_lib
from handvae.data import heatmaps as heatmaps_lib
from handvae.data import spec
from handvae.ops import image_warp, rotation

AUGMENT_ON = ("host", "device", "auto")
# Backends where "auto" runs the per-step work on the device (with the decoded cache on).
# CPU keeps the host path: no faster there (1.06× R2P, 0.95× S4; module docstring).
AUTO_DEVICE_BACKENDS = ("gpu", "tpu")
_SALT = 0xA06E        # the augmentation's stream, apart from the model's noise (same seed)
_RGB_SCALE = (1 / (255 * spec.RGB_STD)).astype(np.float32)
_RGB_OFFSET = (spec.RGB_MEAN / spec.RGB_STD).astype(np.float32)


class Params(NamedTuple):
    """The draws of a batch (B rows).

    Attributes:
      scale: [B] s ∈ [1, 1.2].
      shift: [B, 2] pixels of a 256-px crop box, along the output axes.
      angle: [B] radians, camera roll about the optical axis.
      hue: [B] turns of the hue circle.
      cloud_index: [B, N] int32 indices into each row's point pool.
    """

    scale: jax.Array
    shift: jax.Array
    angle: jax.Array
    hue: jax.Array
    cloud_index: jax.Array


def resolve_augment_on(data_config: Any, backend: str | None = None) -> str:
    """``data.augment_on`` resolved to "host" or "device" for ``backend``.

    Args:
      data_config: ``config.data`` (``augment_on``, ``decoded_cache``); configs saved before
        the field have none and resolve to "host".
      backend: ``jax.default_backend()`` (default).

    Raises:
      ValueError: an unknown value, or "device" without ``data.decoded_cache`` (the message
        names both fields and the fix).
    """
    choice = str(data_config.get("augment_on", "host"))
    if choice not in AUGMENT_ON:
        raise ValueError(f"data.augment_on must be one of {AUGMENT_ON}, got {choice!r}")
    cached = bool(data_config.get("decoded_cache", False))
    if choice == "device" and not cached:
        raise ValueError("data.augment_on='device' reads the decoded cache's uint8 rows: set "
                         "--config.data.decoded_cache=true (or data.augment_on='host' or "
                         "'auto')")
    if choice == "auto":
        backend = jax.default_backend() if backend is None else backend
        return "device" if cached and backend in AUTO_DEVICE_BACKENDS else "host"
    return choice


def row_keys(seed: int, step: jax.Array | int, rows: jax.Array) -> jax.Array:
    """[B] PRNG keys of rows ``rows`` [B] (global row numbers) at ``step``: (seed, step, row)."""
    base = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), _SALT), step)
    return jax.vmap(lambda row: jax.random.fold_in(base, row))(rows)


def sample_params(keys: jax.Array, pool_sizes: jax.Array, pool_capacity: int,
                  num_points: int, *, augment: bool = True) -> Params:
    """The draws of each row (uniform in the host's ranges, ``handvae.data.augment``).

    Args:
      keys: [B] PRNG keys (:func:`row_keys`).
      pool_sizes: [B] int, P: points in each row's pool (≤ ``pool_capacity``).
      pool_capacity: the raw rows' padded pool length.
      num_points: N, points per cloud.
      augment: False draws the identity augmentation (the cloud is still sampled).
    """

    def one(key, pool):
        k_scale, k_shift, k_angle, k_hue, k_perm, k_repl = jax.random.split(key, 6)
        scale = jax.random.uniform(k_scale, (), minval=augment_lib.SCALE_RANGE[0],
                                   maxval=augment_lib.SCALE_RANGE[1])
        shift = jax.random.uniform(k_shift, (2,), minval=-augment_lib.SHIFT_PIXELS,
                                   maxval=augment_lib.SHIFT_PIXELS)
        angle = jax.random.uniform(k_angle, (), minval=-augment_lib.MAX_ROTATION,
                                   maxval=augment_lib.MAX_ROTATION)
        hue = jax.random.uniform(k_hue, (), minval=-augment_lib.MAX_HUE,
                                 maxval=augment_lib.MAX_HUE)
        if not augment:
            scale, shift, angle, hue = (jnp.ones_like(scale), jnp.zeros_like(shift),
                                        jnp.zeros_like(angle), jnp.zeros_like(hue))
        # Without replacement: the N pool points with the smallest uniform keys (padding last).
        noise = jax.random.uniform(k_perm, (pool_capacity,))
        noise = jnp.where(jnp.arange(pool_capacity) < pool, noise, 2.0)
        _, without = jax.lax.top_k(-noise, num_points)
        with_replacement = jax.random.randint(k_repl, (num_points,), 0, jnp.maximum(pool, 1))
        index = jnp.where(pool >= num_points, without, with_replacement).astype(jnp.int32)
        return Params(scale, shift, angle, hue, index)

    return jax.vmap(one)(keys, pool_sizes)


def warp_bilinear(image: jax.Array, src_to_dst: jax.Array, size: int) -> jax.Array:
    """``image`` under an affine map, as Pillow's bilinear ``Image.transform`` renders it.

    Args:
      image: [H, W, C] uint8 (pixel centres at integer (u, v)).
      src_to_dst: [3, 3] affine map from image pixels to output pixels.
      size: S, output side in pixels.

    Returns:
      [S, S, C] float32 holding integers in [0, 255]: black where the source position lies
      outside ``[−½, W − ½) × [−½, H − ½)``, else the bilinear blend of the 4 neighbouring
      pixels (indices clamped to the image), truncated.
    """
    height, width = image.shape[:2]
    inverse = jnp.linalg.inv(src_to_dst)
    v, u = jnp.meshgrid(jnp.arange(size, dtype=jnp.float32),
                        jnp.arange(size, dtype=jnp.float32), indexing="ij")
    x = inverse[0, 0] * u + inverse[0, 1] * v + inverse[0, 2]
    y = inverse[1, 0] * u + inverse[1, 1] * v + inverse[1, 2]
    inside = (x >= -0.5) & (x < width - 0.5) & (y >= -0.5) & (y < height - 0.5)
    x0, y0 = jnp.floor(x), jnp.floor(y)
    dx, dy = (x - x0)[..., None], (y - y0)[..., None]
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
    xs = jnp.clip(x0, 0, width - 1), jnp.clip(x0 + 1, 0, width - 1)
    ys = jnp.clip(y0, 0, height - 1), jnp.clip(y0 + 1, 0, height - 1)
    pixels = image.astype(jnp.float32)

    def row(yi):
        return pixels[yi, xs[0]] * (1 - dx) + pixels[yi, xs[1]] * dx

    value = row(ys[0]) * (1 - dy) + row(ys[1]) * dy
    return jnp.where(inside[..., None], jnp.floor(value), 0.0)


def adjust_hue(image: jax.Array, delta: jax.Array) -> jax.Array:
    """[S, S, 3] float32 integer-valued RGB with the hue turned by ``delta`` turns.

    Pillow's ``convert("RGB", matrix)`` as the host applies it (``augment.adjust_hue``):
    ``⌊M·rgb + ½⌋`` clipped to [0, 255], M = ``augment.hue_rotation_matrix(delta)``.
    """
    matrix = augment_lib.hue_rotation_matrix(delta, jnp).astype(jnp.float32)
    turned = jnp.einsum("...c,dc->...d", image, matrix) + 0.5
    return jnp.clip(jnp.floor(turned), 0.0, 255.0)


def features(raw: dict[str, jax.Array], params: Params, *, image_size: int,
             heatmap_size: int, heatmap_sigma: float, num_points: int, zoom: str = "out",
             keys: Collection[str] | None = None) -> dict[str, jax.Array]:
    """A batch of the contract (``handvae.data.spec``) from raw rows and their draws.

    The host's :func:`handvae.data.pipeline.features_from_params`, batched, in jnp.

    Args:
      raw: raw rows stacked (:func:`handvae.data.pipeline.example_to_raw`): ``image`` uint8
        [B, W, W, 3], ``K_image`` [B, 3, 3], ``keypoints_2d`` [B, 21, 2] (window pixels),
        ``crop_side`` [B] (window pixels), ``keypoints_3d`` [B, 21, 3], ``visible`` [B, 21],
        ``root`` [B, 3] (metres), ``scale`` [B] (metres), ``points`` [B, P, 3],
        ``num_points`` [B] int, ``labelled`` [B].
      params: the draws (:func:`sample_params`).
      image_size: S, output crop side, pixels.
      heatmap_size: Hm, heat-map side, pixels.
      heatmap_sigma: heat-map Gaussian std, heat-map pixels.
      num_points: N, points per cloud.
      zoom: ``data.augment_zoom``.
      keys: batch keys to compute (None: all of ``spec.BATCH_KEYS``).

    Returns:
      dict of float32 arrays with the requested keys, shapes of ``spec.batch_shapes``.
    """
    keys = spec.BATCH_KEYS if keys is None else tuple(keys)
    side = raw["image"].shape[1]

    def one(row, p):
        augment = augment_lib.AugmentParams(scale=p.scale, shift=(p.shift[0], p.shift[1]),
                                            angle=p.angle, hue=p.hue)
        matrix = augment_lib.crop_transform(augment, side, row["crop_side"], row["K_image"],
                                            image_size, zoom, jnp)
        rot = rotation.rotation_about_z(p.angle, jnp).T
        out = {}
        if "rgb" in keys:
            rgb = adjust_hue(warp_bilinear(row["image"], matrix, image_size), p.hue)
            out["rgb"] = rgb * _RGB_SCALE - _RGB_OFFSET
        if "pose" in keys:
            out["pose"] = row["keypoints_3d"] @ rot
        if "heatmaps" in keys or "keypoints_2d" in keys:
            keypoints_2d = image_warp.apply_affine(matrix, row["keypoints_2d"], jnp)
            if "heatmaps" in keys:
                out["heatmaps"] = heatmaps_lib.keypoint_heatmaps(
                    keypoints_2d, image_size, heatmap_size, heatmap_sigma, jnp)
            if "keypoints_2d" in keys:
                out["keypoints_2d"] = keypoints_2d
        for key in ("labelled", "visible", "scale"):
            if key in keys:
                out[key] = row[key]
        if "root" in keys:
            out["root"] = row["root"] @ rot
        if "cloud" in keys:
            cloud = row["points"][p.cloud_index].astype(jnp.float32) @ rot
            out["cloud"] = jnp.where(row["num_points"] > 0, cloud, 0.0)
        if "cloud_resampled" in keys:
            out["cloud_resampled"] = (row["num_points"] < num_points).astype(jnp.float32)
        return out

    batch = jax.vmap(one)(raw, params)
    return {k: batch[k].astype(jnp.float32) for k in spec.BATCH_KEYS if k in batch}


def make_batch_fn(data_config: Any, *, seed: int, keys: Collection[str] | None = None
                  ) -> Callable[[dict[str, jax.Array], jax.Array], dict[str, jax.Array]]:
    """``batch_fn(raw, step) -> batch``: draws keyed by (seed, step, row), then :func:`features`.

    Traceable (call it inside the jitted step with the state's step); rows are numbered
    0…B−1 over the global batch, as the host path numbers them.

    Args:
      data_config: ``config.data`` (image_size, heatmap_size, heatmap_sigma, num_points,
        augment, augment_zoom), read once here.
      seed: the stream's seed (``config.seed``).
      keys: batch keys to compute (a strategy's ``batch_keys()``; None: all).
    """
    image_size, num_points = int(data_config.image_size), int(data_config.num_points)
    heatmap_size, sigma = int(data_config.heatmap_size), float(data_config.heatmap_sigma)
    zoom = str(data_config.get("augment_zoom", "out"))
    augment = bool(data_config.get("augment", True))
    keys = spec.BATCH_KEYS if keys is None else tuple(keys)
    unknown = sorted(set(keys) - set(spec.BATCH_KEYS))
    if unknown:
        raise ValueError(f"keys: unknown batch keys {unknown}; known: {spec.BATCH_KEYS}")

    def batch_fn(raw: dict[str, jax.Array], step: jax.Array) -> dict[str, jax.Array]:
        rows = jnp.arange(raw["image"].shape[0])
        params = sample_params(row_keys(seed, step, rows), raw["num_points"],
                               raw["points"].shape[1], num_points, augment=augment)
        return features(raw, params, image_size=image_size, heatmap_size=heatmap_size,
                        heatmap_sigma=sigma, num_points=num_points, zoom=zoom, keys=keys)

    return batch_fn
