"""From a built TFDS data set to batches of the contract in :mod:`handvae.data.spec`.

Reading is random access on array_record files (``builder.as_data_source``): no TensorFlow.
Randomness is a pure function of ``(seed, step, row)``: the example order is a fresh
permutation per epoch drawn from ``(seed, epoch)``, and each row's augmentation and point
sample come from ``default_rng([seed, step, row])``. Batch ``k`` is therefore the same whether
the stream started at 0 or resumed with ``start_step=k``.

    for batch in train_batches(config.data, config.batch_size, seed=config.seed,
                               start_step=step):
        ...
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import queue
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from handvae.data import augment as augment_lib
from handvae.data import cloud as cloud_lib
from handvae.data import heatmaps as heatmaps_lib
from handvae.data import source as source_lib
from handvae.data import spec

PREFETCH_BATCHES = 2
_EPOCH_SALT = 0x5EED
_RGB_SCALE = (1 / (255 * spec.RGB_STD)).astype(np.float32)   # (x/255 − mean)/std, fused
_RGB_OFFSET = (spec.RGB_MEAN / spec.RGB_STD).astype(np.float32)


def _frame_rng(example: dict) -> np.random.Generator:
    frame = example.get("frame", b"")
    frame = frame.encode() if isinstance(frame, str) else bytes(frame)
    return np.random.default_rng(zlib.crc32(frame))


def example_to_features(example: dict, data_config: Any, rng: np.random.Generator | None, *,
                        augment: bool) -> dict[str, np.ndarray]:
    """One stored example → one batch row (the spec's keys without the batch axis).

    Args:
      example: a stored example (see ``source_lib.decode_example``: ``image`` [C, C, 3] uint8,
        ``K_image``, ``crop_side``, ``keypoints_3d``, ``keypoints_2d``, ``points``, ...).
      data_config: ``config.data`` (image_size, num_points, heatmap_size, heatmap_sigma).
      rng: the row's generator; None draws the cloud from a generator fixed by the frame key
        (deterministic evaluation).
      augment: apply the paper's augmentation (needs ``rng``).

    Returns:
      dict with ``rgb`` [S, S, 3], ``pose`` [21, 3], ``heatmaps`` [Hm, Hm, 21], ``cloud``
      [N, 3], ``labelled`` (1.0), ``keypoints_2d`` [21, 2], ``visible`` [21], ``root`` [3],
      ``scale``, ``cloud_resampled``; all float32.
    """
    if augment and rng is None:
        raise ValueError("example_to_features: augment=True needs an rng")
    if rng is None:
        rng = _frame_rng(example)
    example = source_lib.decode_example(example)
    size = int(data_config.image_size)
    params = augment_lib.sample_params(rng, size) if augment else augment_lib.IDENTITY
    # The stored image shows a window 2x the crop box; the crop is its central ``crop_side``
    # pixels, so the warp's window scale is relative to that (minimal adaptation to the
    # 2.0.0 storage; see source_lib.decode_example).
    params = dataclasses.replace(
        params, scale=params.scale * float(example["crop_side"]) / example["image"].shape[0])
    image, keypoints_2d, rot, _ = augment_lib.augment(
        example["image"], example["keypoints_2d"], example["K_image"], params, size)
    cloud, resampled = cloud_lib.sample_cloud(example["points"], int(data_config.num_points),
                                              rng)
    rot32 = rot.T.astype(np.float32)
    rgb = image.astype(np.float32) * _RGB_SCALE - _RGB_OFFSET
    return {
        "rgb": rgb,
        "pose": np.asarray(example["keypoints_3d"], np.float32) @ rot32,
        "heatmaps": heatmaps_lib.keypoint_heatmaps(
            keypoints_2d, size, int(data_config.heatmap_size), float(data_config.heatmap_sigma)),
        "cloud": cloud @ rot32,
        "labelled": np.float32(1.0),
        "keypoints_2d": keypoints_2d.astype(np.float32),
        "visible": np.asarray(example["visible"], np.float32),
        "root": np.asarray(example["root"], np.float32) @ rot32,
        "scale": np.float32(example["scale"]),
        "cloud_resampled": np.float32(resampled),
    }


def _stack(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.stack([row[key] for row in rows]).astype(np.float32) for key in rows[0]}


def _check_source(source, what: str) -> int:
    size = len(source)
    if size == 0:
        raise ValueError(f"{what}: the source is empty")
    return size


class _Prefetcher:
    """Runs ``make_batch(step)`` for step = start, start+1, ... in a background thread."""

    def __init__(self, make_batch, start_step: int, num_workers: int):
        self._make_batch = make_batch
        self._queue: queue.Queue = queue.Queue(maxsize=PREFETCH_BATCHES)
        self._stop = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(max(1, num_workers))
        self._thread = threading.Thread(target=self._run, args=(start_step,), daemon=True)
        self._thread.start()

    def _run(self, step: int) -> None:
        while not self._stop.is_set():
            try:
                item = self._make_batch(step, self._pool)
            except BaseException as e:  # handed to the consumer, raised there
                item = e
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return
            step += 1

    def __iter__(self) -> "_Prefetcher":
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        while True:
            try:
                item = self._queue.get(timeout=0.5)
                break
            except queue.Empty:
                if not self._thread.is_alive():
                    raise RuntimeError("input pipeline thread died") from None
        if isinstance(item, BaseException):
            self.close()
            raise item
        return item

    def close(self) -> None:
        """Stops the background thread (also called when the iterator is garbage collected)."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> "_Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def train_batches(data_config: Any, batch_size: int, *, seed: int, start_step: int = 0,
                  process_index: int = 0, process_count: int = 1, source=None
                  ) -> Iterator[dict[str, np.ndarray]]:
    """Infinite, shuffled, augmented (if ``data_config.augment``) training batches.

    Args:
      data_config: ``config.data``.
      batch_size: rows per batch on THIS process (the global batch is
        ``batch_size · process_count``; process p yields rows ``[p·batch_size, (p+1)·batch_size)``
        of every global batch, so the union over processes does not depend on the split).
      seed: the stream's seed.
      start_step: first batch index; batch k depends only on (seed, k), so resuming at k
        reproduces the uninterrupted stream from k on.
      process_index, process_count: multi-host sharding.
      source: a random-access source (``len``, ``[i]``); default ``source_lib.load_source(train_split)``.

    Returns:
      An iterator of batches of :mod:`handvae.data.spec`. ``labelled`` is 1
      for the first ``round(labelled_fraction · n)`` examples of the (sorted) split. Call
      ``close()`` (or use it as a context manager) to stop its background thread.
    """
    if batch_size <= 0 or not 0 <= process_index < process_count:
        raise ValueError(f"need batch_size > 0 and 0 <= process_index < process_count, got "
                         f"batch_size={batch_size}, process_index={process_index}, "
                         f"process_count={process_count}")
    if source is None:
        source = source_lib.load_source(data_config, data_config.get("train_split", "train"))
    size = _check_source(source, "train_batches")
    fraction = float(data_config.get("labelled_fraction", 1.0))
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"data.labelled_fraction must be in [0, 1], got {fraction}")
    num_labelled = int(round(fraction * size))
    do_augment = bool(data_config.get("augment", True))
    local, global_batch = batch_size, batch_size * process_count
    rows = range(process_index * local, (process_index + 1) * local)
    permutations: dict[int, np.ndarray] = {}

    def index_of(position: int) -> int:
        epoch = position // size
        if epoch not in permutations:
            if len(permutations) > 2:
                permutations.pop(min(permutations))
            permutations[epoch] = np.random.default_rng(
                [seed, epoch, _EPOCH_SALT]).permutation(size)
        return int(permutations[epoch][position % size])

    def make_row(step: int, row: int, index: int) -> dict[str, np.ndarray]:
        features = example_to_features(source[index], data_config,
                                       np.random.default_rng([seed, step, row]),
                                       augment=do_augment)
        features["labelled"] = np.float32(index < num_labelled)
        return features

    def make_batch(step: int, pool) -> dict[str, np.ndarray]:
        indices = [index_of(step * global_batch + row) for row in rows]
        return _stack(list(pool.map(make_row, [step] * local, rows, indices)))

    return _Prefetcher(make_batch, start_step, int(data_config.get("num_workers", 2)))


def eval_batches(data_config: Any, batch_size: int, *, split: str, num_examples: int = -1,
                 source=None) -> Iterator[dict[str, np.ndarray]]:
    """Finite, ordered, un-augmented batches of ``split`` (the last one may be smaller).

    Args:
      data_config: ``config.data``.
      batch_size: rows per batch.
      split: e.g. ``data_config.eval_split``.
      num_examples: the first ``num_examples`` examples; -1 for all.
      source: a random-access source; default ``source_lib.load_source(data_config, split)``.

    Yields:
      Batches of :mod:`handvae.data.spec` with ``labelled`` = 1.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if source is None:
        source = source_lib.load_source(data_config, split)
    size = _check_source(source, f"eval_batches({split!r})")
    total = size if num_examples < 0 else min(num_examples, size)
    for start in range(0, total, batch_size):
        rows = [example_to_features(source[i], data_config, None, augment=False)
                for i in range(start, min(start + batch_size, total))]
        yield _stack(rows)
