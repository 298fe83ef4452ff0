"""Plumbing shared by the writers: argument checks, per-frame seeds, atomic output, PNGs.

A data set is written into a hidden temporary folder beside ``--out`` and renamed into place
only when every frame and label file is written, so an interrupted run never leaves a
half-written data set under the requested name. Every data set carries the marker file
:data:`MARKER_FILE`; ``--overwrite`` replaces only folders that carry it, and refuses, naming
them, when such a folder holds files the generator does not write (:func:`foreign_files`).

Decision (moved from WORKSPACE.md)

**Stale partial data sets are removed by marker and pid** (paper silent; our choice). The
generator writes into `.<out>.partial-<pid>-<random>/`, which carries the marker from the
start; SIGTERM/Ctrl-C remove it at once, and the next run removes any left by a killed
(SIGKILL) run whose pid is gone. Folders without the marker are never touched.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pathlib
import re
import secrets
import shutil
import signal
import sys
import threading
import zlib
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from handvae.ops.processes import pid_alive

PNG_COMPRESS_LEVEL = 3


def check_count(name: str, value: int) -> int:
    """Returns ``value`` if it is a positive int, else raises a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}; pass a count ≥ 1")
    return int(value)


# Disk per frame (RHD layout: colour, mask and depth PNGs; measured ≈ 220 kB with noise) and
# host memory per frame while writing (job list and annotations).
DISK_BYTES_PER_FRAME = 250_000
HOST_BYTES_PER_FRAME = 2_000


def check_size(out: str | os.PathLike, num_frames: int) -> None:
    """Raises a ValueError when ``num_frames`` would not fit the free disk or memory.

    Args:
      out: the output folder (it need not exist yet).
      num_frames: training plus evaluation frames.
    """
    where = pathlib.Path(out).absolute()
    while not where.exists():
        where = where.parent
    disk, free = num_frames * DISK_BYTES_PER_FRAME, shutil.disk_usage(where).free
    if disk > free:
        raise ValueError(f"--num-train + --num-eval = {num_frames} frames need about "
                         f"{disk / 1e9:.3g} GB of disk, but {where} has {free / 1e9:.3g} GB "
                         "free; lower the counts or choose another --out")
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    memory = num_frames * HOST_BYTES_PER_FRAME
    if memory > available:
        raise ValueError(f"--num-train + --num-eval = {num_frames} frames need about "
                         f"{memory / 1e9:.3g} GB of memory, but {available / 1e9:.3g} GB are "
                         "free; lower the counts")


def frame_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    """The seed of one frame, derived from (seed, split, index) only.

    Frames therefore do not depend on the order or the number of workers that make them.
    """
    split_code = zlib.crc32(split.encode("utf-8"))
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, split_code, int(index)])


def frame_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """A fresh generator for one frame (see :func:`frame_seed`)."""
    return np.random.default_rng(frame_seed(seed, split, index))


MARKER_FILE = ".handvae-synthetic"
MARKER_TEXT = ("Written by `python -m data_prep.synthetic` (handvae). This marker lets "
               "--overwrite replace this folder; without it the generator refuses to delete.\n")
_PARTIAL = ".partial-"


class UnsafeOverwriteError(FileExistsError):
    """``--overwrite`` was asked to delete a folder this project did not make."""


def is_generated(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` carries the generator's marker file (so it may be replaced)."""
    return (pathlib.Path(folder) / MARKER_FILE).is_file()


def write_marker(folder: str | os.PathLike) -> None:
    """Marks ``folder`` as a data set written by this generator (deterministic bytes)."""
    (pathlib.Path(folder) / MARKER_FILE).write_text(MARKER_TEXT)


def check_replaceable(out: pathlib.Path, what: str = "--out") -> None:
    """Raises when deleting ``out`` could lose data that this project did not write.

    Refuses the working directory and its ancestors, and any folder without
    :data:`MARKER_FILE`.
    """
    resolved = out.resolve()
    cwd = pathlib.Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise UnsafeOverwriteError(
            f"{what} {out} is the working directory or one of its parents; refusing to "
            "replace it (choose a new folder below it, e.g. data/synthetic/rhd)")
    if not is_generated(resolved):
        raise UnsafeOverwriteError(
            f"{what} {out} was not written by `python -m data_prep.synthetic` (it has no "
            f"{MARKER_FILE} marker), so --overwrite will not delete it; delete it yourself "
            "or choose another folder")


def _name_shape(name: str) -> str:
    """A file name with its numbers generalised: ``00012.png`` → ``#.png``."""
    return re.sub(r"\d+", "#", name)


def foreign_files(old: pathlib.Path, new: pathlib.Path, limit: int = 5) -> list[str]:
    """Entries of the data set ``old`` that the generator does not write, judged by ``new``.

    ``new`` is a freshly generated data set. A file of ``old`` is the generator's when
    ``new`` has a file of the same shape (numbers generalised, so other frame counts match)
    in the same relative folder; an empty folder of ``old`` is when ``new`` has that folder.
    Everything else (a user's notes, predictions, photos) is foreign.

    Returns:
      Up to ``limit`` relative paths of foreign entries, sorted.
    """
    own_files, own_dirs = set(), set()
    for path in new.rglob("*"):
        rel = path.relative_to(new)
        if path.is_dir() and not path.is_symlink():
            own_dirs.add(rel)
        else:
            own_files.add((rel.parent, _name_shape(rel.name)))
    foreign = []
    for path in sorted(old.rglob("*")):
        rel = path.relative_to(old)
        if path.is_dir() and not path.is_symlink():
            if rel not in own_dirs and not any(path.iterdir()):
                foreign.append(f"{rel}{os.sep}")
        elif (rel.parent, _name_shape(rel.name)) not in own_files:
            foreign.append(str(rel))
        if len(foreign) >= limit:
            break
    return foreign


def clean_stale_partials(out: pathlib.Path) -> list[pathlib.Path]:
    """Deletes hidden ``.<name>.partial-<pid>-*`` folders left by killed runs.

    Only folders that carry :data:`MARKER_FILE` and whose writing process is gone are
    deleted. Returns the deleted paths.
    """
    removed = []
    for path in out.parent.glob(f".{out.name}{_PARTIAL}*"):
        pid_text = path.name[len(f".{out.name}{_PARTIAL}"):].split("-")[0]
        if (path.is_dir() and not path.is_symlink() and pid_text.isdigit()
                and is_generated(path) and not pid_alive(int(pid_text))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """Turns SIGTERM into SystemExit in this (main) process, so clean-up code runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def handler(signum: int, frame: Any) -> None:
        if os.getpid() != owner:  # a forked worker: die as SIGTERM would
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike, overwrite: bool) -> Iterator[pathlib.Path]:
    """Yields a temporary folder that replaces ``out`` when the block succeeds.

    Every argument is checked before anything is deleted. The temporary folder
    ``.<name>.partial-<pid>-<random>`` carries :data:`MARKER_FILE` from the start, is made
    with the user's umask, and is removed on an error, Ctrl-C or SIGTERM; one left by a
    SIGKILL is removed by the next run.

    Raises:
      FileExistsError: ``out`` exists, is not an empty folder, and ``overwrite`` is False.
      UnsafeOverwriteError: ``overwrite`` would delete the working directory, one of its
        parents, a folder without this generator's marker, or files in it that the
        generator did not write (named; checked once the new data set is written, before
        anything of ``out`` is deleted).
      NotADirectoryError: ``out`` exists and is a file.
    """
    out = pathlib.Path(out).absolute()
    resolved = out.resolve()
    cwd = pathlib.Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise UnsafeOverwriteError(
            f"--out {out} is the working directory or one of its parents; choose a new "
            "folder below it (e.g. data/synthetic/rhd)")
    if out.exists():
        if not out.is_dir():
            raise NotADirectoryError(f"--out {out} exists and is not a folder; choose another "
                                     "path")
        if any(out.iterdir()):
            if not overwrite:
                hint = ("pass --overwrite to replace it" if is_generated(out) else
                        "it was not written by this generator, so delete it yourself")
                raise FileExistsError(f"--out {out} exists and is not empty; {hint} or "
                                      "choose an empty folder")
            check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_partials(out)
    temporary = out.parent / f".{out.name}{_PARTIAL}{os.getpid()}-{secrets.token_hex(4)}"
    temporary.mkdir(mode=0o777)  # the umask applies, unlike tempfile.mkdtemp's 0o700
    try:
        with _sigterm_as_exit():
            write_marker(temporary)
            yield temporary
            if out.exists():
                foreign = foreign_files(out, temporary)
                if foreign:
                    raise UnsafeOverwriteError(
                        f"--out {out} holds files the generator did not write "
                        f"({', '.join(foreign)}), which --overwrite would delete; move them "
                        "out of it and run again (nothing was changed)")
                shutil.rmtree(out)
            temporary.rename(out)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def save_png(path: pathlib.Path, array: np.ndarray) -> None:
    """Writes a uint8 [H, W] or [H, W, 3] array as PNG (deterministic bytes)."""
    if array.dtype != np.uint8:
        raise ValueError(f"{path}: PNG arrays must be uint8, got {array.dtype}")
    Image.fromarray(array).save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


def load_png(path: str | os.PathLike) -> np.ndarray:
    """Reads a PNG into a numpy array (uint8 [H, W] or [H, W, C])."""
    with Image.open(path) as image:
        return np.asarray(image)


def run_jobs(function: Callable[[Any], Any], jobs: Sequence[Any], workers: int | None,
             description: str, progress: bool = True) -> list[Any]:
    """Maps ``function`` over ``jobs`` in order, over ``workers`` processes, with tqdm.

    Args:
      function: a picklable module-level function of one job.
      jobs: the job arguments.
      workers: processes to use; None → all cores; 1 → in this process.
      description: the progress bar's label.
      progress: show a progress bar.

    Returns:
      The results, in the order of ``jobs``.
    """
    from tqdm import tqdm

    if workers is None:
        workers = os.cpu_count() or 1
    workers = check_count("--workers", workers)
    workers = min(workers, len(jobs))
    bar = tqdm(total=len(jobs), desc=description, disable=not progress, unit="frame")
    results: list[Any] = []
    try:
        if workers == 1:
            for job in jobs:
                results.append(function(job))
                bar.update()
        else:
            # fork is cheap and keeps the parent's imports, but is unsafe once JAX's threads
            # run; results come back in order either way.
            use_fork = os.name == "posix" and "jax" not in sys.modules
            context = multiprocessing.get_context("fork" if use_fork else "spawn")
            with context.Pool(workers) as pool:
                chunk = max(1, min(16, len(jobs) // (4 * workers)))
                for result in pool.imap(function, jobs, chunksize=chunk):
                    results.append(result)
                    bar.update()
    finally:
        bar.close()
    return results


def spread(total: int, bins: int) -> list[int]:
    """Splits ``total`` items over ``bins`` as evenly as possible, earlier bins first."""
    return [total // bins + (1 if b < total % bins else 0) for b in range(bins)]


