"""Builds a handvae TFDS data set without TensorFlow, at any size, in bounded memory.

    python -m data_prep.build --dataset rhd --config synthetic \\
        --manual_dir data/synthetic/rhd --data_dir data/tfds [--workers N] [--overwrite]

gives what ``tfds build data_prep/rhd --config synthetic --manual_dir ... --data_dir ...
--file_format array_record`` would, read back the same way
(``tfds.builder_from_directory(<data_dir>/rhd/synthetic/2.0.0).as_data_source(split)``), but:

* TFDS's writer buffers examples in memory and spills past 1 GB through ``tf.io.gfile``
  (TensorFlow); here worker processes read and crop frames, the main process writes their
  serialized examples straight into array_record shards of at most ``SHARD_BYTES`` in sorted
  key order (output independent of the worker count), and the metadata is written with TFDS's
  own ``DatasetInfo``/``SplitInfo``; memory stays bounded (a window of in-flight frames);
* everything is written into ``<config>/.incomplete-<version>-<pid>`` and renamed to
  ``<version>`` at the end, so a killed build never leaves a folder a reader takes as
  complete; the next build removes the leftovers of dead builds;
* ``build_manifest.json`` records the raw files (names, sizes, mtimes) and the build settings;
  a later build with the same inputs reuses the data set, one with changed raw data rebuilds
  it, and a folder without a manifest is replaced only with ``--overwrite``;
* ``build_report.json`` records, per split, the frames the raw data define, the examples
  stored and the skipped frames by reason (:func:`handvae.data.source.split_counts` reads it).

Build details and decision (moved from WORKSPACE.md)

The build (`data_prep/build.py`) reads and crops frames in `--workers` processes (default all
cores; the output bytes do not depend on it), writes array_record shards of ≤ 256 MB in sorted
key order straight from the workers' serialized records (peak memory is a bounded window of
frames, not the data set), records the metadata with TFDS's own `DatasetInfo`/`SplitInfo`,
and works in `<config>/.incomplete-<version>-<pid>`, renamed to `<version>` only when
complete (a killed build leaves nothing a reader takes as built; the next build removes it).
`build_manifest.json` holds a digest of the raw files' names, sizes and mtimes and the build
settings: the same inputs reuse the build, changed raw data rebuild it (logged), a folder
without a manifest is replaced only with `--overwrite`; raw data that change during the build
abort it. A full disk is an `OSError` naming the folder and the free space.
`build_report.json` has, per split, the frames the raw data define, the examples stored and
the skips by reason (`handvae.data.source.split_counts(config.data, split)` reads it).

**TFDS without TensorFlow, at any size.** Builders write `array_record`; `handvae.data`
reads them by random access (`tfds.builder_from_directory(...).as_data_source`). The `tfds
build` CLI and `DatasetBuilderTestCase` import TensorFlow, and TFDS's own writer spills to
`tf.io.gfile` past 1 GB (issue 12), so `python -m data_prep.build` writes the shards itself
(array_record's writer, TFDS's metadata classes) and tests build `dummy_data/` into a tmp
`data_dir`. `Builder.download_and_prepare` still works for small sets.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import errno
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import time

import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core import example_serializer, naming
from tqdm.auto import tqdm

from data_prep import features as feature_lib
from handvae.ops.processes import pid_alive

log = logging.getLogger(__name__)

BUILDERS = ("rhd", "stb")
CONFIGS = ("real", "synthetic", "real_plain", "synthetic_plain")
RAW_FOLDERS = {"rhd": ("RHD_published_v2",), "stb": ("images", "labels")}
SPLIT_ORDER = ("train", "validation", "test")
SHARD_BYTES = 256 * 2**20      # a new shard past this many bytes
CHUNK = 16                     # frames per worker job
MANIFEST = "build_manifest.json"
REPORT = "build_report.json"
INCOMPLETE = ".incomplete-"


def builder_class(dataset: str) -> type[tfds.core.GeneratorBasedBuilder]:
    """The builder class of ``dataset`` ('rhd' or 'stb')."""
    if dataset == "rhd":
        from data_prep.rhd import rhd_dataset_builder
        return rhd_dataset_builder.Builder
    if dataset == "stb":
        from data_prep.stb import stb_dataset_builder
        return stb_dataset_builder.Builder
    raise ValueError(f"dataset must be one of {BUILDERS}, got {dataset!r}")


# --- raw-data manifest -------------------------------------------------------------------------

def raw_manifest(dataset: str, config: str, version: str, manual_dir: str | os.PathLike
                 ) -> dict:
    """Names, sizes and mtimes of every raw file the build reads, and the build settings.

    Returns:
      ``{"digest": sha256 hex, "num_files": n, "settings": {...}}``; equal digests mean the
      same raw files (same names, sizes, mtimes) and the same settings.
    """
    settings = {"dataset": dataset, "config": config, "version": version,
                "context_size": feature_lib.CONTEXT_SIZE, "max_points": feature_lib.MAX_POINTS,
                "jpeg_quality": feature_lib.JPEG_QUALITY}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    count = 0
    for folder in RAW_FOLDERS[dataset]:
        top = os.path.join(os.fspath(manual_dir), folder)
        for root, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                stat = os.stat(path)
                digest.update(f"{os.path.relpath(path, top)}\0{stat.st_size}\0"
                              f"{stat.st_mtime_ns}\n".encode())
                count += 1
    return {"digest": digest.hexdigest(), "num_files": count, "settings": settings}


def _read_json(path: epath.Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


# --- workers -----------------------------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(dataset: str, view_correction: bool) -> None:
    builder = builder_class(dataset)
    specs = feature_lib.example_features().get_serialized_info()
    _WORKER.update(load=builder.load_frame, view_correction=view_correction,
                   features=feature_lib.example_features(),
                   serializer=example_serializer.ExampleSerializer(specs))


def _encode_chunk(tasks: list[feature_lib.FrameTask]) -> list[tuple[str, bytes | None, str]]:
    """Worker: [(key, serialized example or None, skip message)] for a chunk of frames."""
    out = []
    for task in tasks:
        try:
            example = feature_lib.to_stored(_WORKER["load"](task, _WORKER["view_correction"]))
            encoded = _WORKER["features"].encode_example(example)
            # deterministic=True: protobuf map order otherwise follows the process's string
            # hash seed, and the bytes would depend on which worker wrote the record
            record = _WORKER["serializer"].get_tf_example(encoded).SerializeToString(
                deterministic=True)
            out.append((task.key, record, ""))
        except feature_lib.SkipFrame as e:
            out.append((task.key, None, f"{e.reason}\0{e}"))
    return out


def _results(tasks, pool: concurrent.futures.Executor | None, workers: int):
    """Yields chunk results in task order, at most ``4 · workers`` chunks in flight."""
    chunks = [tasks[i:i + CHUNK] for i in range(0, len(tasks), CHUNK)]
    if pool is None:
        for chunk in chunks:
            yield _encode_chunk(chunk)
        return
    pending = collections.deque()
    chunk_iter = iter(chunks)
    try:
        for chunk in chunk_iter:
            pending.append(pool.submit(_encode_chunk, chunk))
            if len(pending) >= 4 * workers:
                break
        while pending:
            yield pending.popleft().result()
            nxt = next(chunk_iter, None)
            if nxt is not None:
                pending.append(pool.submit(_encode_chunk, nxt))
    finally:   # on an error or Ctrl-C, drop the queued chunks instead of finishing them
        for future in pending:
            future.cancel()


def _pool(dataset: str, view_correction: bool, workers: int):
    """A pool of ``workers`` spawned processes (None for one: work in this process)."""
    if workers <= 1:
        return None
    return concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"),   # no fork of threads
        initializer=_init_worker, initargs=(dataset, view_correction))


# --- shard writing -----------------------------------------------------------------------------

def _write_split(name: str, split: str, tasks, folder: epath.Path, pool, workers: int,
                 shard_bytes: int, progress: bool) -> tuple[tfds.core.SplitInfo, dict]:
    """Writes one split's shards into ``folder``; returns its SplitInfo and skip counts."""
    from array_record.python import array_record_module

    template = naming.ShardedFileTemplate(data_dir=folder, dataset_name=name, split=split,
                                          filetype_suffix="array_record")
    temp_names, lengths, total_bytes = [], [], 0
    skipped: dict[str, int] = {}
    writer, shard_size = None, 0
    bar = tqdm(total=len(tasks), desc=f"{name} {split}", unit="frame", disable=not progress,
               smoothing=0.05)
    try:
        for chunk in _results(tasks, pool, workers):
            for key, record, message in chunk:
                bar.update(1)
                if record is None:
                    reason, text = message.split("\0", 1)
                    skipped[reason] = skipped.get(reason, 0) + 1
                    log.warning("%s %s: skipping %s: %s", name, split, key, text)
                    continue
                if writer is None:
                    temp_names.append(folder / f"{split}.shard{len(temp_names):05d}.tmp")
                    writer = array_record_module.ArrayRecordWriter(
                        os.fspath(temp_names[-1]), "group_size:1")
                    lengths.append(0)
                    shard_size = 0
                writer.write(record)
                lengths[-1] += 1
                shard_size += len(record)
                total_bytes += len(record)
                if shard_size >= shard_bytes:
                    writer.close()
                    writer = None
        if writer is not None:
            writer.close()
            writer = None
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    if not tasks:
        raise ValueError(f"{name} {split}: the raw data define no frame for this split (the "
                         "validation split holds out part of the training data, so RHD needs "
                         "at least 2 training frames and STB 2 training sequences)")
    if not lengths:
        raise ValueError(f"{name} {split}: no example was stored ({len(tasks)} frames, "
                         f"skipped: {skipped}); check the raw data and the log above")
    for index, path in enumerate(temp_names):
        path.rename(template.sharded_filepath(shard_index=index, num_shards=len(temp_names)))
    info = tfds.core.SplitInfo(name=split, shard_lengths=lengths, num_bytes=total_bytes,
                               filename_template=template)
    return info, skipped


def _clean_stale(parent: epath.Path, version: str) -> None:
    """Removes ``.incomplete-<version>-<pid>`` folders of builds that are no longer running."""
    for path in parent.glob(f"{INCOMPLETE}{version}-*"):
        try:
            pid = int(path.name.rsplit("-", 1)[1])
        except ValueError:
            pid = None  # not a build's name: leftovers
        if pid is not None and pid != os.getpid() and pid_alive(pid):
            continue          # another build is running
        log.info("removing the leftovers of an interrupted build: %s", path)
        shutil.rmtree(path, ignore_errors=True)


def _reused(builder: tfds.core.DatasetBuilder) -> tfds.core.DatasetBuilder:
    """Marks ``builder`` as an up-to-date data set that :func:`build` reused, not built."""
    builder.handvae_reused = True
    return builder


def was_reused(builder: tfds.core.DatasetBuilder) -> bool:
    """Whether :func:`build` returned ``builder`` without building (it was up to date)."""
    return bool(getattr(builder, "handvae_reused", False))


def build(dataset: str, config: str, manual_dir: str | os.PathLike, data_dir: str | os.PathLike,
          *, workers: int | None = None, overwrite: bool = False, shard_bytes: int = SHARD_BYTES,
          progress: bool = False) -> tfds.core.DatasetBuilder:
    """Builds ``<dataset>/<config>`` from ``manual_dir`` into ``data_dir`` (array_record).

    Args:
      dataset: 'rhd' or 'stb'.
      config: 'real', 'synthetic', 'real_plain' or 'synthetic_plain'.
      manual_dir: the folder described by the builder's MANUAL_DOWNLOAD_INSTRUCTIONS.
      data_dir: TFDS data_dir to write into (e.g. ``data/tfds``).
      workers: processes reading and cropping frames (None: all cores, or this process alone
        for a set of at most 64 frames; 1: this process). The output does not depend on it.
      overwrite: rebuild even if the raw data did not change, and replace a folder that has no
        build manifest.
      shard_bytes: a shard is closed once it holds this many bytes.
      progress: show a progress bar per split.

    Returns:
      A read-only builder of the built data set (``.info``, ``.as_data_source(split)``);
      :func:`was_reused` tells whether it was up to date and reused rather than built.

    Raises:
      FileNotFoundError: ``manual_dir`` is not the expected layout (the message says what to
        do). FileExistsError: the target holds a data set this tool did not record (pass
        ``overwrite``). OSError: the disk is full (nothing half-written is left behind).
      RuntimeError: the raw data changed while the build ran.
    """
    cls = builder_class(dataset)
    builder = cls(config=config, data_dir=os.fspath(data_dir), file_format="array_record")
    version = str(builder.version)
    final = epath.Path(builder.data_path)
    parent = final.parent
    manifest = raw_manifest(dataset, config, version, manual_dir)
    if final.exists():
        old = _read_json(final / MANIFEST)
        if old is None and not overwrite:
            raise FileExistsError(
                f"{final} holds a data set without {MANIFEST} (built by an older data_prep or "
                f"by hand), so it cannot tell whether {manual_dir} changed since. Rebuild with "
                "--overwrite (python -m data_prep.build ... --overwrite) to replace it.")
        if old is not None and old.get("digest") == manifest["digest"] and not overwrite:
            log.info("%s is up to date with %s; reusing it (--overwrite rebuilds)", final,
                     manual_dir)
            _clean_stale(parent, version)  # a killed build's leftovers go either way
            return _reused(tfds.builder_from_directory(os.fspath(final)))
        if old is not None and old.get("digest") != manifest["digest"]:
            log.warning("the raw data in %s differ from those %s was built from "
                        "(%d files then, %d now); rebuilding", manual_dir, final,
                        old.get("num_files", -1), manifest["num_files"])
    tasks, counts, _ = cls.frame_tasks(manual_dir)
    parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(parent, version)
    temp = parent / f"{INCOMPLETE}{version}-{os.getpid()}"
    if temp.exists():
        shutil.rmtree(temp)
    temp.mkdir()
    if workers is None:   # all cores, unless the set is too small to pay for starting them
        small = sum(len(t) for t in tasks.values()) <= 4 * CHUNK
        workers = 1 if small else (os.cpu_count() or 1)
    workers = max(1, int(workers))
    view_correction = builder.builder_config.view_correction
    _init_worker(dataset, view_correction)
    report = {"dataset": dataset, "config": config, "version": version, "splits": {}}
    pool = None
    try:
        pool = _pool(dataset, view_correction, workers)
        split_infos = []
        for split in SPLIT_ORDER:
            info, skipped = _write_split(builder.name, split, tasks[split], temp, pool,
                                         workers, shard_bytes, progress)
            split_infos.append(info)
            for reason, count in counts[split]["skipped"].items():
                skipped[reason] = skipped.get(reason, 0) + count
            report["splits"][split] = {"defined": counts[split]["defined"],
                                       "stored": info.num_examples, "skipped": skipped}
            level = logging.WARNING if skipped else logging.INFO
            log.log(level, "%s %s: %d frames defined, %d stored, skipped %s", builder.name,
                    split, counts[split]["defined"], info.num_examples, skipped or "none")
        builder.info.set_file_format("array_record", override=True,
                                     override_if_initialized=True)
        builder.info.set_splits(tfds.core.SplitDict(split_infos))
        builder.info.write_to_directory(temp)
        (temp / REPORT).write_text(json.dumps(report, indent=2))
        if raw_manifest(dataset, config, version, manual_dir)["digest"] != manifest["digest"]:
            raise RuntimeError(f"the raw data in {manual_dir} changed while the build ran; "
                               "nothing was written. Build again once they are complete.")
        if pool is not None:
            pool.shutdown()
            pool = None
        (temp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if final.exists():
            trash = parent / f"{INCOMPLETE}{version}-{os.getpid()}-old"
            final.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
        temp.rename(final)
    except OSError as e:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        shutil.rmtree(temp, ignore_errors=True)
        if e.errno == errno.ENOSPC:
            free = shutil.disk_usage(parent).free
            raise OSError(errno.ENOSPC, f"disk full while building {dataset}/{config} into "
                          f"{parent} ({free / 2**30:.2f} GiB free now); nothing was kept. Free "
                          "space (the full RHD build needs about 3 GB) or choose another "
                          "--data_dir") from e
        raise
    except BaseException:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return tfds.builder_from_directory(os.fspath(final))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=BUILDERS, required=True)
    parser.add_argument("--config", choices=CONFIGS, default="real")
    parser.add_argument("--manual_dir", required=True)
    parser.add_argument("--data_dir", default=os.environ.get("HANDVAE_DATA_DIR", "data/tfds"))
    parser.add_argument("--workers", type=int, default=None,
                        help="processes reading and cropping frames (default: all cores)")
    parser.add_argument("--overwrite", action="store_true",
                        help="rebuild even if the raw data did not change; replace a data set "
                             "without a build manifest")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    try:
        builder = build(args.dataset, args.config, args.manual_dir, args.data_dir,
                        workers=args.workers, overwrite=args.overwrite,
                        progress=not args.no_progress)
    except (OSError, RuntimeError, ValueError) as e:   # messages name the cause and the fix
        parser.exit(2, f"error: {e}\n")
    seconds = time.perf_counter() - start
    sizes = {name: split.num_examples for name, split in builder.info.splits.items()}
    if was_reused(builder):
        print(f"{args.dataset}/{args.config} in {builder.data_dir} is up to date with "
              f"{args.manual_dir}, reused (--overwrite rebuilds): {sizes}")
    else:
        print(f"built {args.dataset}/{args.config} into {builder.data_dir} in {seconds:.1f} s: "
              f"{sizes}")


if __name__ == "__main__":
    main()
