"""Plumbing shared by the writers: argument checks, per-frame seeds, atomic output, PNGs.

A data set is written into a hidden temporary folder beside ``--out`` and renamed into place
only when every frame and label file is written, so an interrupted run never leaves a
half-written data set under the requested name.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pathlib
import shutil
import sys
import tempfile
import zlib
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from PIL import Image

PNG_COMPRESS_LEVEL = 3


def check_count(name: str, value: int) -> int:
    """Returns ``value`` if it is a positive int, else raises a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}; pass a count ≥ 1")
    return int(value)


def frame_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    """The seed of one frame, derived from (seed, split, index) only.

    Frames therefore do not depend on the order or the number of workers that make them.
    """
    split_code = zlib.crc32(split.encode("utf-8"))
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, split_code, int(index)])


def frame_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """A fresh generator for one frame (see :func:`frame_seed`)."""
    return np.random.default_rng(frame_seed(seed, split, index))


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike, overwrite: bool) -> Iterator[pathlib.Path]:
    """Yields a temporary folder that replaces ``out`` when the block succeeds.

    Raises:
      FileExistsError: ``out`` exists, is not an empty folder, and ``overwrite`` is False.
      NotADirectoryError: ``out`` exists and is a file.
    """
    out = pathlib.Path(out).absolute()
    if out.exists():
        if not out.is_dir():
            raise NotADirectoryError(f"--out {out} exists and is not a folder; choose another "
                                     "path")
        if any(out.iterdir()) and not overwrite:
            raise FileExistsError(f"--out {out} exists and is not empty; pass --overwrite to "
                                  "replace it or choose an empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield temporary
        if out.exists():
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


