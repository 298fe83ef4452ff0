"""From a built TFDS data set to batches of the contract in :mod:`handvae.data.spec`.

Reading is random access on array_record files (``builder.as_data_source``): no TensorFlow.
Randomness is a pure function of ``(seed, step, row)``: which example a row reads comes from
:mod:`handvae.data.streams` (per-epoch permutations drawn from the seed; a labelled and an
unlabelled stream under weak supervision), and each row's augmentation and point sample come
from ``default_rng([seed, step, row])``. Batch ``k`` is therefore the same whether the stream
started at 0 or resumed with ``start_step=k``.

Only the requested ``keys`` are computed (:func:`handvae.data.spec.required_keys` gives a
strategy's): R2P's batches carry neither heat maps nor clouds.

    keys = spec.required_keys(("pose",), False, evaluation=False)
    for batch in train_batches(config.data, config.batch_size, seed=config.seed,
                               start_step=step, keys=keys):
        ...

Pipeline facts (moved from WORKSPACE.md)

Pipeline facts (`handvae/data/`: `streams.py` which row reads which example, `prepared.py`
per-example work done once, `augment.py` the one warp, `pipeline.py` rows and batches,
`prefetch.py` the background producer):

- Batch `k` depends only on `(seed, k)`: per-epoch permutations from `(seed, stream, epoch)`,
  per-row generator `default_rng([seed, k, row])`; `start_step=k` resumes exactly.
  `batch_size` is per process (global = `batch_size · process_count`, process p takes rows
  `[p·batch_size, (p+1)·batch_size)` of each global batch, labelled rows placed by global row,
  so the union does not depend on the split). One thread prefetches 4 batches and
  `data.num_workers` workers build them (`data.worker_kind`): threads (default) split each
  batch's rows, or spawned processes each build whole batches, `num_workers + 1` steps ahead,
  delivered in step order; call `.close()` on the train iterator. A batch is the same either
  way (tested, including a resume).
- Only the requested `keys` are computed (`keys=None`: all); `spec.required_keys(targets,
  uses_cloud_input, *, evaluation)` gives a strategy's (R2P trains on rgb, pose, labelled).
  Draws never depend on `keys`: a key's value is the same whatever else is requested.
- Each training example is prepared once per process and cached (`data.cache_mb`, default
  1024 MB; beyond it examples are re-read): decoded, float32, and the stored image shrunk by a
  box filter of integer factor `k = ⌊crop_side / S⌋` (512² → 128² for the demo's 64² crops;
  also the anti-aliasing the bilinear warp lacks). Training and evaluation both go through
  `prepared.prepare`, so cached and uncached rows are identical. An encoded JPEG `image`
  would be decoded at 1/k size (Pillow `draft`): 4.9 ms vs 22 ms for zlib at 512² (load 14).
- Stored example (contract of `source.decode_example`): `image` [C, C, 3], a window 2× the
  hand's crop box centred on it, `K_image`, `crop_side` (256 for C = 512), `keypoints_2d` in
  stored pixels, `points` [M ≥ 0, 3] (M = 0: zero cloud, `cloud_resampled` = 1). Examples
  stored before that (`K_crop`, 256² crop) are read as an image without context (crop = whole
  image), so augmentation shows black fill on them, as before.
- Augmentation (Sec. 4.1) is ONE affine warp of the stored image: camera rotation θ ∈ [−π, π]
  about the optical axis (image map `K R_z K⁻¹`, pose/cloud/root rotate by `R_z`, output
  `K' = A K R_zᵀ` stays a pinhole camera for any principal point), window side
  `crop_side · s`, s ∈ [1, 1.2] (`data.augment_zoom="out"`; `"in"`: `crop_side / s`), shift
  ±20 px of a 256 box along the output axes, hue ±0.1 turn. Worst case (s = 1.2, shift
  (±20, ±20), any θ) samples up to 251.1 px from the centre of a 512² image (255.5 available):
  never outside (`tests/data/test_data_ops.py`).
- Weak supervision (`streams.py`, Sec. 5.3): `data.train_fraction` f keeps the first
  `round(f·n)` examples (the supervised baseline at m %); `data.labelled_fraction` m < 1 labels
  the first `round(m·n_f)` and every global batch takes `data.labelled_per_batch` rows
  (0: half the batch, `B // 2`) from the labelled stream and the rest from the unlabelled one.
  Out of range, or no labelled / no unlabelled frame: ValueError naming the field.
"""

from __future__ import annotations

import concurrent.futures
import functools
import zlib
from collections.abc import Collection, Iterator
from typing import Any

import numpy as np

from handvae.data import augment as augment_lib
from handvae.data import cloud as cloud_lib
from handvae.data import decoded_cache
from handvae.data import heatmaps as heatmaps_lib
from handvae.data import prefetch
from handvae.data import prepared as prepared_lib
from handvae.data import source as source_lib
from handvae.data import spec
from handvae.data import streams
from handvae.ops import image_warp, rotation

_RGB_SCALE = (1 / (255 * spec.RGB_STD)).astype(np.float32)   # (x/255 − mean)/std, fused
_RGB_OFFSET = (spec.RGB_MEAN / spec.RGB_STD).astype(np.float32)
MAX_POINTS = 1024      # pool size of a raw row (the builders keep at most 1,024 points)


def _frame_rng(example: dict) -> np.random.Generator:
    frame = example.get("frame", b"")
    frame = frame.encode() if isinstance(frame, str) else bytes(frame)
    return np.random.default_rng(zlib.crc32(frame))


def _check_keys(keys: Collection[str] | None) -> tuple[str, ...]:
    if keys is None:
        return spec.BATCH_KEYS
    unknown = sorted(set(keys) - set(spec.BATCH_KEYS))
    if unknown:
        raise ValueError(f"keys: unknown batch keys {unknown}; known: {spec.BATCH_KEYS}")
    return tuple(k for k in spec.BATCH_KEYS if k in keys)


def example_to_features(example: dict, data_config: Any, rng: np.random.Generator | None, *,
                        augment: bool, keys: Collection[str] | None = None
                        ) -> dict[str, np.ndarray]:
    """One stored example → one batch row (the spec's keys without the batch axis).

    Args:
      example: a stored example; :func:`handvae.data.source.decode_example` gives ``image``
        [C, C, 3] uint8, ``K_image`` [3, 3], ``crop_side``, ``keypoints_2d`` (stored-image
        pixels), ``keypoints_3d``, ``visible``, ``root``, ``scale``, ``points`` [M, 3] (M ≥ 0).
      data_config: ``config.data`` (image_size, num_points, heatmap_size, heatmap_sigma,
        augment_zoom).
      rng: the row's generator; None draws the cloud from a generator fixed by the frame key
        (deterministic evaluation).
      augment: apply the paper's augmentation (needs ``rng``).
      keys: the batch keys to compute (None: all of ``spec.BATCH_KEYS``). The draws do not
        depend on it: a key's value is the same whatever else is requested.

    Returns:
      dict with the requested keys among ``rgb`` [S, S, 3], ``pose`` [21, 3], ``heatmaps``
      [Hm, Hm, 21], ``cloud`` [N, 3] (zeros and ``cloud_resampled`` = 1 when M = 0),
      ``labelled`` (1.0), ``keypoints_2d`` [21, 2] output pixels, ``visible`` [21], ``root``
      [3], ``scale``, ``cloud_resampled``; all float32.
    """
    if augment and rng is None:
        raise ValueError("example_to_features: augment=True needs an rng")
    keys = _check_keys(keys)
    if rng is None:
        rng = _frame_rng(example)
    example = prepared_lib.prepare(example, int(data_config.image_size))
    params = augment_lib.sample_params(rng) if augment else augment_lib.IDENTITY
    cloud_index = None
    pool = len(example["points"])
    if ("cloud" in keys or "cloud_resampled" in keys) and pool:  # last draw: keys never
        cloud_index, _ = cloud_lib.sample_index(pool, int(data_config.num_points), rng)
    return features_from_params(example, data_config, params, cloud_index, keys=keys)


def features_from_params(example: prepared_lib.Prepared, data_config: Any,
                         params: augment_lib.AugmentParams, cloud_index: np.ndarray | None, *,
                         keys: Collection[str] | None = None) -> dict[str, np.ndarray]:
    """:func:`example_to_features` once its draws are made: a pure function of them.

    Args:
      example: a prepared example (:func:`handvae.data.prepared.prepare`).
      data_config: ``config.data``.
      params: the augmentation (``augment.IDENTITY``: none).
      cloud_index: [N] indices into ``example["points"]`` (None when it has no points or no
        cloud key is requested).
      keys: as in :func:`example_to_features`.
    """
    keys = _check_keys(keys)
    size = int(data_config.image_size)
    zoom = data_config.get("augment_zoom", "out")
    side = example["image"].shape[0]
    matrix = augment_lib.crop_transform(params, side, example["crop_side"], example["K_image"],
                                        size, zoom)
    rot32 = rotation.rotation_about_z(params.angle).T.astype(np.float32)
    out: dict[str, np.ndarray] = {}
    if "rgb" in keys:
        rgb = augment_lib.render(example["image"], matrix, size, params.hue).astype(np.float32)
        rgb *= _RGB_SCALE
        rgb -= _RGB_OFFSET
        out["rgb"] = rgb
    if "pose" in keys:
        out["pose"] = example["keypoints_3d"] @ rot32
    if "heatmaps" in keys or "keypoints_2d" in keys:
        keypoints_2d = image_warp.apply_affine(matrix, example["keypoints_2d"])
        if "heatmaps" in keys:
            out["heatmaps"] = heatmaps_lib.keypoint_heatmaps(
                keypoints_2d, size, int(data_config.heatmap_size),
                float(data_config.heatmap_sigma))
        if "keypoints_2d" in keys:
            out["keypoints_2d"] = keypoints_2d.astype(np.float32)
    if "labelled" in keys:
        out["labelled"] = np.float32(1.0)
    if "visible" in keys:
        out["visible"] = example["visible"]
    if "root" in keys:
        out["root"] = example["root"] @ rot32
    if "scale" in keys:
        out["scale"] = example["scale"]
    if "cloud" in keys or "cloud_resampled" in keys:
        num_points = int(data_config.num_points)
        points = example["points"]
        if len(points) == 0:
            cloud, resampled = np.zeros((num_points, 3), np.float32), True
        else:
            cloud = points[cloud_index].astype(np.float32) @ rot32
            resampled = len(points) < num_points
        if "cloud" in keys:
            out["cloud"] = cloud
        if "cloud_resampled" in keys:
            out["cloud_resampled"] = np.float32(resampled)
    return out


def example_to_raw(example: dict, image_size: int, max_points: int = MAX_POINTS
                   ) -> dict[str, np.ndarray]:
    """One stored example → one row of the device path's raw batch (no per-step work).

    The row is the prepared example (:func:`handvae.data.prepared.prepare`; a decoded-cache
    row as it is stored), at fixed shapes so rows stack: ``image`` uint8 [C/k, C/k, 3] (the
    context window), ``K_image`` [3, 3], ``keypoints_2d`` [21, 2] (both in that window's
    pixels), ``crop_side`` [], ``keypoints_3d`` [21, 3], ``visible`` [21], ``root`` [3],
    ``scale`` [] (float32), ``points`` float16 [max_points, 3] (the pool, zero-padded; the
    builders store float16, so exact) and ``num_points`` int32 [] (the pool's size), plus
    ``labelled`` float32 [] set by the caller. :mod:`handvae.data.device_augment` turns a
    batch of them into the contract's batch.

    Raises:
      ValueError: a pool larger than ``max_points``.
    """
    example = prepared_lib.prepare(example, int(image_size))
    points = example["points"]
    if len(points) > max_points:
        raise ValueError(f"example {example.get('frame', '')!r} has {len(points)} points, the "
                         f"device path holds {max_points} per example")
    padded = np.zeros((max_points, 3), np.float16)
    padded[:len(points)] = points
    return {"image": np.asarray(example["image"], np.uint8),
            **{k: np.asarray(example[k], np.float32)
               for k in ("K_image", "keypoints_2d", "crop_side", "keypoints_3d", "visible",
                         "root", "scale")},
            "points": padded, "num_points": np.int32(len(points)),
            "labelled": np.float32(1.0)}


def _stack(rows: list[dict[str, np.ndarray]], *, keep_dtypes: bool = False
           ) -> dict[str, np.ndarray]:
    if keep_dtypes:
        return {key: np.stack([row[key] for row in rows]) for key in rows[0]}
    return {key: np.stack([row[key] for row in rows]).astype(np.float32, copy=False)
            for key in rows[0]}


def _check_source(source, what: str) -> int:
    size = len(source)
    if size == 0:
        raise ValueError(f"{what}: the source is empty")
    return size


def train_batches(data_config: Any, batch_size: int, *, seed: int, start_step: int = 0,
                  process_index: int = 0, process_count: int = 1, source=None,
                  keys: Collection[str] | None = None, raw: bool = False
                  ) -> prefetch.Prefetcher:
    """Infinite, shuffled, augmented (if ``data_config.augment``) training batches.

    Args:
      data_config: ``config.data`` (also ``train_fraction``, ``labelled_fraction``,
        ``labelled_per_batch``: see :mod:`handvae.data.streams`; ``num_workers`` and
        ``worker_kind``, "threads" or "processes": see :mod:`handvae.data.prefetch`).
      batch_size: rows per batch on THIS process (the global batch is
        ``batch_size · process_count``; process p yields rows ``[p·batch_size, (p+1)·batch_size)``
        of every global batch, so the union over processes does not depend on the split).
      seed: the stream's seed.
      start_step: first batch index; batch k depends only on (seed, k), so resuming at k
        reproduces the uninterrupted stream from k on.
      process_index, process_count: multi-host sharding.
      source: a random-access source (``len``, ``[i]``); default
        ``source_lib.load_source(data_config, data_config.train_split)``.
      keys: batch keys to compute and ship (None: all); see :func:`spec.required_keys`.
      raw: ship raw rows instead (:func:`example_to_raw`, with ``labelled``): the uint8
        context windows and labels that :mod:`handvae.data.device_augment` turns into
        batches on the device (``data.augment_on="device"``); ``keys`` is then ignored.

    Returns:
      An iterator of batches of :mod:`handvae.data.spec` (raw rows with ``raw``);
      ``labelled`` is 1 for rows from the first ``round(labelled_fraction · n_train)``
      examples of the (sorted) split. Call
      ``close()`` (or use it as a context manager) to stop its background thread and workers.

    Raises:
      ValueError: bad batch/process numbers, an empty source, a weak-supervision field out
        of range, or an unknown ``worker_kind`` (the message names it).
    """
    if batch_size <= 0 or not 0 <= process_index < process_count:
        raise ValueError(f"need batch_size > 0 and 0 <= process_index < process_count, got "
                         f"batch_size={batch_size}, process_index={process_index}, "
                         f"process_count={process_count}")
    maker = _TrainBatches(data_config, batch_size, seed, process_index, process_count, source,
                          _check_keys(keys), raw=raw)
    return prefetch.Prefetcher(maker, start_step, int(data_config.get("num_workers", 2)),
                               read_ahead=functools.partial(maker.read_ahead,
                                                            start_step=start_step),
                               worker_kind=str(data_config.get("worker_kind", "threads")))


class _TrainBatches:
    """``train_batches``'s batch ``step``: a pure function of the arguments it was made with.

    Picklable, for worker processes: it travels without its state (the source, the cache of
    prepared examples, the stream's plan), which each process rebuilds on first use, loading
    its own source unless one was given (a given source must then pickle). A process's cache
    gets ``cache_mb / num_workers``, so all workers together keep the threads' budget.

    With ``data.decoded_cache`` (and no given source) the examples come from the on-disk
    decoded cache (:mod:`handvae.data.decoded_cache`), built here, in the caller, on first
    use; worker processes map the same files. The per-process cache still sits in front of
    it (the same ``cache_mb``), so a warm example costs what it costs today and one beyond the
    budget costs a read of the mapped file instead of a decode. Where the decoded cache
    cannot be kept (no room) the caller falls back to today's path and the workers follow
    that decision.
    """

    def __init__(self, data_config: Any, batch_size: int, seed: int, process_index: int,
                 process_count: int, source, keys: tuple[str, ...], raw: bool = False):
        self.data_config, self.batch_size, self.seed = data_config, batch_size, seed
        self.raw = raw
        self.process_index, self.process_count = process_index, process_count
        self.keys, self._given_source = keys, source
        self._decoded_dir: str | None = None   # decided once, in the caller ("": not used)
        self._state = self._build(share=1)     # errors surface here, in the caller

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_state": None}

    def _decoded(self) -> decoded_cache.DecodedCache | None:
        if not self.data_config.get("decoded_cache", False) or self._given_source is not None:
            return None
        if self._decoded_dir is None:        # the caller: open or build it, once
            cache = decoded_cache.open_or_build(
                self.data_config, self.data_config.get("train_split", "train"),
                int(self.data_config.image_size),
                num_workers=int(self.data_config.get("num_workers", 2)))
            self._decoded_dir = cache.directory if cache is not None else ""
            return cache
        return decoded_cache.DecodedCache(self._decoded_dir) if self._decoded_dir else None

    def _build(self, share: int) -> tuple:
        source = self._decoded()
        source = self._given_source if source is None else source
        if source is None:
            source = source_lib.load_source(self.data_config,
                                            self.data_config.get("train_split", "train"))
        size = _check_source(source, "train_batches")
        cache_bytes = (int(self.data_config.get("cache_mb", 1024)) << 20) // share
        source = prepared_lib.ExampleCache(source, int(self.data_config.image_size), cache_bytes)
        plan = streams.make_plan(self.data_config, size, self.batch_size * self.process_count)
        return source, plan, streams.RowIndex(plan, self.seed)

    def _ready(self) -> tuple:
        if self._state is None:       # in a worker process
            self._state = self._build(share=max(1, int(self.data_config.get("num_workers", 2))))
        return self._state

    def row(self, step: int, row: int) -> dict[str, np.ndarray]:
        source, _, row_index = self._ready()
        index, labelled = row_index(step, row)
        if self.raw:       # the per-step work happens on the device (device_augment)
            features = example_to_raw(source[index], int(self.data_config.image_size))
            features["labelled"] = np.float32(labelled)
            return features
        features = example_to_features(source[index], self.data_config,
                                       np.random.default_rng([self.seed, step, row]),
                                       augment=bool(self.data_config.get("augment", True)),
                                       keys=self.keys)
        if "labelled" in features:
            features["labelled"] = np.float32(labelled)
        return features

    @property
    def rows(self) -> range:
        """This process's rows of every global batch."""
        return range(self.process_index * self.batch_size,
                     (self.process_index + 1) * self.batch_size)

    def __call__(self, step: int, pool=None) -> dict[str, np.ndarray]:
        if pool is None:
            return _stack([self.row(step, row) for row in self.rows], keep_dtypes=self.raw)
        return _stack(list(pool.map(self.row, [step] * self.batch_size, self.rows)),
                      keep_dtypes=self.raw)

    def read_ahead(self, stop, start_step: int = 0) -> None:
        """Prepares the examples of the coming steps into the cache (threads only: the first
        epoch is the only one that reads from disk); overlaps with compiling the step. Values
        never depend on it: a row reads the same prepared example either way."""
        source, plan, _ = self._ready()
        ahead = streams.RowIndex(plan, self.seed)      # its own permutation memo (not shared)
        for step in range(start_step, start_step + 2 * plan.num_train // self.batch_size + 2):
            for row in self.rows:
                if stop.is_set() or source.full or source.cached() >= plan.num_train:
                    return
                source[ahead(step, row)[0]]


def eval_batches(data_config: Any, batch_size: int, *, split: str, num_examples: int = -1,
                 source=None, keys: Collection[str] | None = None
                 ) -> Iterator[dict[str, np.ndarray]]:
    """Finite, ordered, un-augmented batches of ``split`` (the last one may be smaller).

    Rows are built on ``data_config.num_workers`` threads, one batch ahead of the caller.

    Args:
      data_config: ``config.data``.
      batch_size: rows per batch.
      split: e.g. ``data_config.eval_split``.
      num_examples: the first ``num_examples`` examples; -1 for all.
      source: a random-access source; default ``source_lib.load_source(data_config, split)``.
      keys: batch keys to compute (None: all); see :func:`spec.required_keys`.

    Yields:
      Batches of :mod:`handvae.data.spec` with ``labelled`` = 1.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    keys = _check_keys(keys)
    if source is None:
        source = source_lib.load_source(data_config, split)
    size = _check_source(source, f"eval_batches({split!r})")
    total = size if num_examples < 0 else min(num_examples, size)

    def row(index: int) -> dict[str, np.ndarray]:
        return example_to_features(source[index], data_config, None, augment=False, keys=keys)

    # Rows on data.num_workers threads, the next batch's rows in flight while the caller
    # evaluates this one (the values and their order do not depend on it).
    pool = concurrent.futures.ThreadPoolExecutor(max(1, int(data_config.get("num_workers", 2))))
    try:
        pending = None
        for start in range(0, total + batch_size, batch_size):
            submitted = [pool.submit(row, i) for i in range(start, min(start + batch_size, total))]
            if pending:
                yield _stack([future.result() for future in pending])
            pending = submitted
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
