"""A decoded cache: every training example prepared once, kept in memory-mapped files on disk.

Today's path (:class:`handvae.data.prepared.ExampleCache`) decodes each stored JPEG and shrinks
it by the box factor k the first time a row reads it, and keeps up to ``data.cache_mb`` of the
results in each process's memory; beyond that budget (the full RHD at the cpu scale needs
~2.4 GB) and in every new process (``worker_kind="processes"``, every new run) the decoding is
done again. The decoded cache writes :func:`handvae.data.prepared.prepare`'s output for every
example of a split once, as fixed-size uint8/float arrays in flat files, and every later run and
worker process maps them (``np.memmap``): the page cache is shared, nothing is decoded again,
and a row costs only the per-step work (warp, heat maps, point sample).

What is stored, per example (``prepare``'s fields, so rows are identical to today's path by
construction; tested):

* ``image`` uint8 [C/k, C/k, 3]: the stored context window (2× the hand's crop box) shrunk by
  k = ⌊crop_side / S⌋, i.e. exactly the window the augmentation samples from;
* ``K_image``, ``keypoints_2d``, ``crop_side`` (float64, in the shrunk image's pixels),
  ``keypoints_3d``, ``visible``, ``root``, ``scale`` (float32);
* ``points`` [M, 3] as float16 (the builders store float16, so this is lossless; an example
  whose points do not round-trip stops the build, which then falls back), ragged: one flat
  array with per-example offsets;
* ``frame`` keys in ``frames.json``.

Size (:func:`bytes_per_example`): S = 64 (cpu scale, k = 4): 49,152 B of image + 6,144 B of
points (1,024 stored) + 776 B of labels and offsets = 56,072 B per example, 2.31 GB for RHD's
41,258 frames, 1.68 GB for STB's 30,000. S = 256 (paper scale, k = 1): 786,432 B of image,
793,352 B per example, 32.7 GB for RHD and 23.8 GB for STB: the whole 512² window is kept
(rotation by any angle at scale 1.2 with ±20 px shifts reaches 251 px from the centre), 14×
the JPEG build's ~56 KB. At that size the page cache no longer holds it on a small host and
reads come from disk (~0.8 MB per row, ~25 MB per batch of 32); the paper is silent on the
input pipeline, this trade of disk for decoding is ours.

Where: ``<data_dir>/<name>/<config>/<version>-decoded/<split>_s<S>_<id>/`` beside the TFDS
build, or under ``data.decoded_cache_dir`` if set, where ``<id>`` is a digest of the build's
identity (``dataset_info.json``, ``build_manifest.json`` and every file's name, size and
mtime): a rebuilt data set gets a new folder and the stale ones of the same split and size
are removed once the new one is complete. A cache is written into ``.tmp-<pid>-<random>`` and
renamed into place only when complete, with ``manifest.json`` written last; a killed write
leaves only a temporary folder, which no reader opens and the next writer on that host
removes. Two
writers racing: the first rename wins, the other discards its copy and opens the winner's.
When the disk lacks room (estimated before writing, or an ``OSError`` while writing), nothing
is kept and :func:`open_or_build` returns None: the pipeline then uses today's path.

Decision and measurements (moved from WORKSPACE.md)

**Decoded cache** (`data.decoded_cache`, `data.decoded_cache_dir`; design in
`handvae/data/decoded_cache.py`; the paper is silent on input pipelines): off by default.
With the data inside `cache_mb` it changes nothing on 2 cores (R2P 0.99× / 1.05×, S4
0.93× / 1.16× today's trainer rate, two interleaved runs, load 11–17); beyond it 1.67× /
1.06×. 56 KB per example at the cpu scale,
793 KB at the paper scale (RHD 32.7 GB). The cache's rows also feed the device-side
augmentation (`data.augment_on`, :mod:`handvae.data.device_augment`).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import time
import uuid
from typing import Any

import numpy as np

from handvae.data import prepared as prepared_lib
from handvae.data import source as source_lib
from handvae.ops.processes import pid_alive

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FRAMES = "frames.json"
SUFFIX = "-decoded"
_CHUNK = 256                      # examples decoded per batch of the thread pool
_MARGIN_BYTES = 64 << 20          # free space kept beyond the estimate
# Fixed-size fields: name → (dtype, shape without the example axis). "image" is added per cache.
FIELDS = {"K_image": ("<f8", (3, 3)), "keypoints_2d": ("<f8", (21, 2)), "crop_side": ("<f8", ()),
          "keypoints_3d": ("<f4", (21, 3)), "visible": ("<f4", (21,)), "root": ("<f4", (3,)),
          "scale": ("<f4", ())}
POINTS_DTYPE = "<f2"


class NoRoomError(OSError):
    """The cache does not fit on the disk (estimated or found while writing)."""


def bytes_per_example(output_size: int, *, stored_side: int = 512, crop_side: int = 256,
                      max_points: int = 1024) -> int:
    """Bytes one example takes in the cache (``max_points`` stored points, the builders' cap).

    Args:
      output_size: S, the model's crop side (pixels).
      stored_side: C, the stored context window's side (512 in format 2.0.0).
      crop_side: the crop box's side in stored pixels (256).
      max_points: points stored per example (≤ 1,024).
    """
    k = prepared_lib.reduction_factor(stored_side, crop_side, output_size)
    side = stored_side // k
    fixed = sum(np.dtype(d).itemsize * int(np.prod(s, dtype=np.int64)) for d, s in FIELDS.values())
    return side * side * 3 + fixed + max_points * 3 * np.dtype(POINTS_DTYPE).itemsize + 8


def build_identity(version_dir: str) -> str:
    """A digest of a TFDS build: its metadata files' bytes and every file's name, size, mtime.

    Any rebuild (new shards, other settings) changes it, so a cache keyed by it is invalidated.
    """
    digest = hashlib.sha256(os.path.abspath(version_dir).encode())
    for name in sorted(os.listdir(version_dir)):
        path = os.path.join(version_dir, name)
        if not os.path.isfile(path):
            continue
        stat = os.stat(path)
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
        if name in ("dataset_info.json", "build_manifest.json"):
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def cache_root(data_config: Any, version_dir: str) -> str:
    """The folder that holds this build's caches: ``data.decoded_cache_dir`` (a user's choice,
    one sub-folder per build) or ``<version_dir>-decoded`` beside the TFDS build."""
    chosen = data_config.get("decoded_cache_dir", "") or ""
    if chosen:
        name, version = os.path.split(os.path.abspath(version_dir))
        dataset_config = os.path.join(os.path.basename(os.path.dirname(name)),
                                      os.path.basename(name))
        return os.path.join(chosen, dataset_config, version)
    return os.path.abspath(version_dir) + SUFFIX


class DecodedCache:
    """Read-only, memory-mapped prepared examples: ``cache[i]`` equals ``prepare(source[i], S)``.

    Thread-safe and cheap to open (a few ``np.memmap``s); each worker process opens its own.
    Has the interface the pipeline expects of an example cache (``len``, ``[i]``, ``cached()``,
    ``full``).
    """

    full = False

    def __init__(self, directory: str):
        self.directory = directory
        with open(os.path.join(directory, MANIFEST)) as f:
            self.manifest = json.load(f)
        if self.manifest.get("format") != FORMAT_VERSION:
            raise ValueError(f"{directory}: cache format {self.manifest.get('format')}, this "
                             f"code reads {FORMAT_VERSION}")
        n = int(self.manifest["num_examples"])
        self._n = n
        self._arrays = {name: _map(directory, name, dtype, (n, *shape))
                        for name, (dtype, shape) in self.manifest["fields"].items()}
        self._offsets = _map(directory, "points_offsets", "<i8", (n + 1,))
        total = int(self._offsets[-1])
        self._points = (_map(directory, "points", POINTS_DTYPE, (total, 3)) if total
                        else np.zeros((0, 3), POINTS_DTYPE))
        with open(os.path.join(directory, FRAMES)) as f:
            self._frames = json.load(f)

    def __len__(self) -> int:
        return self._n

    def cached(self) -> int:
        return self._n

    def nbytes(self) -> int:
        """Bytes of the cache's files on disk."""
        return sum(os.path.getsize(os.path.join(self.directory, f))
                   for f in os.listdir(self.directory))

    def __getitem__(self, index: int) -> prepared_lib.Prepared:
        if not -self._n <= index < self._n:
            raise IndexError(f"example {index} of a decoded cache of {self._n}")
        index %= self._n
        a = self._arrays
        start, stop = int(self._offsets[index]), int(self._offsets[index + 1])
        return prepared_lib.Prepared({
            "image": a["image"][index],
            "K_image": np.array(a["K_image"][index]),
            "keypoints_2d": np.array(a["keypoints_2d"][index]),
            "crop_side": float(a["crop_side"][index]),
            "keypoints_3d": np.array(a["keypoints_3d"][index]),
            "visible": np.array(a["visible"][index]),
            "root": np.array(a["root"][index]),
            "scale": np.float32(a["scale"][index]),
            "points": np.ascontiguousarray(self._points[start:stop], np.float32),
            "frame": self._frames[index],
        })


def _map(directory: str, name: str, dtype: str, shape: tuple, mode: str = "r") -> np.ndarray:
    return np.memmap(os.path.join(directory, name + ".bin"), dtype=np.dtype(dtype), mode=mode,
                     shape=tuple(int(s) for s in shape))


def open_or_build(data_config: Any, split: str, output_size: int, *, source=None,
                  num_workers: int = 2) -> DecodedCache | None:
    """The decoded cache of ``split`` at crop size ``output_size``, built on first use.

    Args:
      data_config: ``config.data`` (``dataset``, ``data_dir``, ``view_correction``,
        ``decoded_cache_dir``).
      split: e.g. ``"train"``.
      output_size: S (``data.image_size``): fixes the box factor k.
      source: the split's random-access source (default: loaded from ``data_config``).
      num_workers: threads that decode while building.

    Returns:
      The opened cache, or None when it cannot be kept (no room on the disk, points that
      float16 does not hold exactly): the caller then uses today's path. The reason is logged.
    """
    version_dir = source_lib._version_dir(data_config)  # the build being read
    identity = build_identity(version_dir)
    root = cache_root(data_config, version_dir)
    stem = f"{split}_s{int(output_size)}_"
    final = os.path.join(root, stem + identity[:16])
    if os.path.isfile(os.path.join(final, MANIFEST)):
        return DecodedCache(final)
    if source is None:
        source = source_lib.load_source(data_config, split)
    try:
        build(source, final, output_size, identity=identity, split=split,
              num_workers=num_workers)
    except NoRoomError as error:
        _say(f"decoded cache: {error}; using the per-process cache of prepared examples "
             "instead (data.cache_mb)")
        return None
    except _NotExact as error:
        _say(f"decoded cache: {error}; using the per-process cache instead")
        return None
    _remove_stale(root, stem, keep=os.path.basename(final))
    cache = DecodedCache(final)
    _say(f"decoded cache: {len(cache):,} examples of {split} at S={output_size}, "
         f"{cache.nbytes() / 2**20:,.1f} MiB ({cache.nbytes() / max(len(cache), 1):,.0f} "
         f"bytes per example) in {final}")
    return cache


class _NotExact(ValueError):
    """An example's points are not exactly representable in float16."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


_TMP_NAME = re.compile(r"^\.tmp-(?P<host>[A-Za-z0-9_.]+)-(?P<pid>\d+)-[0-9a-f]{8}$")


def _remove_stale(root: str, stem: str, keep: str) -> None:
    """Removes what this module wrote and no longer needs, nothing else: older caches of the
    same split and size (another build; a folder named ``<stem>*`` holding a cache manifest)
    and the temporary folders (``.tmp-<host>-<pid>-<8 hex>``) of writers on this host that
    are no longer running (another host's writer on a shared file system is left alone)."""
    for name in os.listdir(root):
        path = os.path.join(root, name)
        tmp = _TMP_NAME.match(name)
        if name.startswith(stem) and name != keep and _is_cache(path):
            shutil.rmtree(path, ignore_errors=True)
        elif tmp and tmp["host"] == _host() and not pid_alive(int(tmp["pid"])):
            shutil.rmtree(path, ignore_errors=True)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _is_cache(path: str) -> bool:
    try:
        with open(os.path.join(path, MANIFEST)) as f:
            return "format" in json.load(f)
    except (OSError, ValueError):
        return False


def build(source, directory: str, output_size: int, *, identity: str = "", split: str = "",
          num_workers: int = 2) -> None:
    """Writes the decoded cache of ``source`` to ``directory`` atomically.

    Everything is written into a temporary sibling folder, ``manifest.json`` last, and the
    folder is renamed to ``directory`` only when complete.

    Raises:
      NoRoomError: the estimate exceeds the free space, or the disk filled while writing
        (the temporary folder is removed).
      _NotExact: points that float16 does not hold exactly (the builders store float16).
    """
    start_time = time.perf_counter()
    n = len(source)
    if n == 0:
        raise ValueError("decoded cache: the source is empty")
    root = os.path.dirname(os.path.abspath(directory))
    os.makedirs(root, exist_ok=True)
    _remove_stale(root, "\0", keep="")          # dead writers' temporary folders only
    first = prepared_lib.prepare(source[0], output_size)
    fields = {"image": ("|u1", tuple(first["image"].shape)), **FIELDS}
    per_example = sum(np.dtype(d).itemsize * int(np.prod(s, dtype=np.int64))
                      for d, s in fields.values())
    estimate = n * (per_example + 8 + len(first["points"]) * 3 * 2)
    free = shutil.disk_usage(root).free
    if free < estimate + _MARGIN_BYTES:
        raise NoRoomError(f"{n:,} examples need about {estimate / 2**20:,.0f} MiB in {root}, "
                          f"{free / 2**20:,.0f} MiB are free")
    tmp = os.path.join(root, f".tmp-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.makedirs(tmp)
    try:
        _write(source, tmp, fields, output_size, n, num_workers)
        manifest = {"format": FORMAT_VERSION, "identity": identity, "split": split,
                    "output_size": int(output_size), "num_examples": n,
                    "fields": {k: [d, list(s)] for k, (d, s) in fields.items()},
                    "points_dtype": POINTS_DTYPE, "created": time.time(),
                    "build_seconds": time.perf_counter() - start_time}
        with open(os.path.join(tmp, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.rename(tmp, directory)
        except OSError:
            if not os.path.isfile(os.path.join(directory, MANIFEST)):
                raise
            shutil.rmtree(tmp, ignore_errors=True)   # another writer finished first
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if error.errno == 28 or isinstance(error, NoRoomError):   # ENOSPC
            raise NoRoomError(f"the disk filled while writing {tmp}: {error}") from error
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write(source, tmp: str, fields: dict, output_size: int, n: int, num_workers: int) -> None:
    # Plain sequential writes, not a writable memmap: a full disk is then an OSError (ENOSPC),
    # where a memmap's page fault would kill the process with SIGBUS.
    files = {name: open(os.path.join(tmp, name + ".bin"), "wb") for name in fields}
    files["points"] = open(os.path.join(tmp, "points.bin"), "wb")
    offsets = np.zeros(n + 1, np.int64)
    frames: list[str] = []

    def prepare(index: int) -> dict:
        return prepared_lib.prepare(source[index], output_size)

    try:
        with concurrent.futures.ThreadPoolExecutor(max(1, num_workers)) as pool:
            for chunk_start in range(0, n, _CHUNK):
                indices = range(chunk_start, min(n, chunk_start + _CHUNK))
                for index, example in zip(indices, pool.map(prepare, indices)):
                    for name, (dtype, shape) in fields.items():
                        value = np.asarray(example[name])
                        if value.shape != tuple(shape):
                            raise ValueError(
                                f"decoded cache: example {index} has {name} of shape "
                                f"{value.shape}, the cache holds {tuple(shape)}")
                        files[name].write(np.ascontiguousarray(value, dtype).tobytes())
                    points = np.asarray(example["points"], np.float32).reshape(-1, 3)
                    stored = points.astype(POINTS_DTYPE)
                    if not np.array_equal(stored.astype(np.float32), points, equal_nan=True):
                        raise _NotExact(f"example {index}'s points are not float16 values")
                    files["points"].write(stored.tobytes())
                    offsets[index + 1] = offsets[index] + len(points)
                    frame = example.get("frame", "")
                    frames.append(frame.decode() if isinstance(frame, bytes) else str(frame))
        with open(os.path.join(tmp, "points_offsets.bin"), "wb") as f:
            f.write(offsets.astype("<i8").tobytes())
        with open(os.path.join(tmp, FRAMES), "w") as f:
            json.dump(frames, f)
        for f in files.values():
            f.flush()
            os.fsync(f.fileno())
    finally:
        for f in files.values():
            f.close()
