"""A stored example made ready for the per-step work, and a bounded cache of them.

What does not change from step to step is done once per example: decoding, the float32
conversions, and shrinking the stored image by an integer box filter to about the output
resolution (``k = ⌊crop_side / S⌋``; a 512² stored image for a 64² crop becomes 128²). The
box filter is also the anti-aliasing that the bilinear warp (which samples S² points)
lacks. Both training and evaluation go through :func:`prepare`, so cached and uncached rows are
identical, and a row never depends on whether its example was in the cache.

Decision and measurements (moved from WORKSPACE.md)

**Per-example cache, not a build-time cache.** What does not change per step (decode,
box reduction to ~S) is done on first read and kept per process (`data.cache_mb`); a
build-time copy per crop size would multiply the stored data. The first epoch still reads
from disk: zlib inflation is ~60 % of a read (cProfile), so JPEG storage with draft decoding
(supported by `prepared.prepare`) is the remaining lever for the first epoch. A read-ahead
thread fills the cache for the coming steps (it overlaps with compiling the step).
`python benchmarks/input_pipeline.py --data_dir data/tfds --steps 100` (demo config,
augmentation on, synthetic 1000 train frames, 2 shared cores; step + pipeline in one loop)
gave `data_wait_fraction` before (main, all keys, load 15–28) → after (load 15–19):
R2P 0.27 → 0.0009, R2HP 0.13 → 0.0005, R2CP 0.087 → 0.0007, R2CHP 0.024 → 0.0008,
RC2CHP_kl 0.0002 → 0.0002, RC2CHP_poe 0.0004 → 0.0002; pipeline alone after one epoch
90 → 1428 examples/s (R2P keys). Worker processes were not needed at the demo and cpu
scales (the GIL does not bind once examples are cached).
"""

from __future__ import annotations

import io
import threading
from typing import Any

import numpy as np
from PIL import Image

from handvae.data import source as source_lib


def _decoded(example: dict) -> dict:
    """``source.decode_example``'s contract (``image`` [C, C, 3], ``K_image``, ``crop_side``).

    Examples stored before the context change (``K_crop``, a 256² crop and no ``crop_side``)
    are read as a stored image without context: the crop is the whole image, so augmentation
    samples outside it (black fill) exactly as it did then. Rebuild the data to avoid that.
    """
    example = source_lib.decode_example(example)
    if "K_image" not in example and "K_crop" in example:
        example = dict(example, K_image=example["K_crop"],
                       crop_side=np.float32(np.shape(example["image"])[0]))
    return example


def reduction_factor(image_side: int, crop_side: float, output_size: int) -> int:
    """Largest k ≤ ⌊crop_side / S⌋ dividing the image side (1: no reduction)."""
    k = max(1, int(crop_side // output_size))
    while image_side % k:
        k -= 1
    return k


def _decode_reduced(encoded: bytes, crop_side: float, output_size: int
                    ) -> tuple[np.ndarray, int]:
    """Decodes an encoded (JPEG, PNG) square image already shrunk by the factor k.

    JPEG is decoded at 1/2, 1/4 or 1/8 size in the DCT domain (Pillow's ``draft``), which is
    several times cheaper than a full decode; the rest of k (and other formats) is a box
    ``reduce``. Returns the image and k.
    """
    with Image.open(io.BytesIO(encoded)) as pil:
        side = pil.size[0]
        k = reduction_factor(side, crop_side, output_size)
        if k > 1 and pil.format == "JPEG":
            pil.draft("RGB", (side // k, side // k))
        pil = pil.convert("RGB")
        done = side // pil.size[0]
        if k > done:
            pil = pil.reduce(k // done)
        return np.asarray(pil), k


class Prepared(dict):
    """A dict returned by :func:`prepare` (so it is not prepared twice)."""


def prepare(example: dict, output_size: int) -> Prepared:
    """One stored example → the contract's fields as arrays, image shrunk by the box factor k.

    Args:
      example: a stored example (see :func:`handvae.data.source.decode_example`); its
        ``image`` may also be encoded bytes (JPEG is then decoded directly at reduced size).
      output_size: S, the output crop side.

    Returns (an example already prepared is returned as it is):
      dict with ``image`` [C/k, C/k, 3] uint8 and ``K_image``, ``keypoints_2d``, ``crop_side``
      in its pixels (``u_k = (u − (k−1)/2) / k``, pixel centres at integers), ``keypoints_3d``,
      ``visible``, ``root``, ``points`` [M, 3] float32, ``scale``, ``frame``.
    """
    if isinstance(example, Prepared):
        return example
    example = _decoded(example)
    crop_side = float(example["crop_side"])
    image = example["image"]
    if isinstance(image, (bytes, bytearray, memoryview)):
        image, k = _decode_reduced(bytes(image), crop_side, output_size)
    else:
        image = np.asarray(image)
        k = reduction_factor(image.shape[0], crop_side, output_size)
        if k > 1:
            image = np.asarray(Image.fromarray(np.ascontiguousarray(image)).reduce(k))
    to_reduced = np.array([[1 / k, 0, -(k - 1) / (2 * k)], [0, 1 / k, -(k - 1) / (2 * k)],
                           [0, 0, 1]])
    keypoints_2d = np.asarray(example["keypoints_2d"], np.float64)
    return Prepared({
        "image": np.ascontiguousarray(image, dtype=np.uint8),
        "K_image": to_reduced @ np.asarray(example["K_image"], np.float64),
        "keypoints_2d": keypoints_2d / k - (k - 1) / (2 * k),
        "crop_side": crop_side / k,
        "keypoints_3d": np.asarray(example["keypoints_3d"], np.float32),
        "visible": np.asarray(example["visible"], np.float32),
        "root": np.asarray(example["root"], np.float32),
        "scale": np.float32(example["scale"]),
        "points": np.ascontiguousarray(np.asarray(example["points"], np.float32).reshape(-1, 3)),
        "frame": example.get("frame", b""),
    })


def nbytes(prepared: dict) -> int:
    return sum(np.asarray(v).nbytes for v in prepared.values())


class ExampleCache:
    """``source[i]`` prepared once and kept, up to ``max_bytes`` (then read every time).

    Thread-safe: two workers may prepare the same example at once (same result, one is kept).
    """

    def __init__(self, source: Any, output_size: int, max_bytes: int):
        self._source, self._size, self._max = source, output_size, max_bytes
        self._items: dict[int, dict] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.full = False   # an example did not fit

    def cached(self) -> int:
        """How many examples are kept."""
        return len(self._items)

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict:
        item = self._items.get(index)
        if item is not None:
            return item
        item = prepare(self._source[index], self._size)
        size = nbytes(item)
        with self._lock:
            if index not in self._items and self._bytes + size <= self._max:
                self._items[index] = item
                self._bytes += size
            elif index not in self._items:
                self.full = True
        return item
