"""The launcher's output folders: which ones it may write into or delete, and whether it fits.

An output folder belongs to the launcher's preset that made it when it carries that preset's
marker file (e.g. ``.handvae-demo``). The launcher writes only into an empty folder or one it
marked; ``force`` deletes only the preset's own entries (its :class:`OutputFolder` layout)
and names the other files it keeps. Arguments and sizes are checked before anything is
written (:func:`check_integer`, :func:`check_size`).

Who may delete what (moved from WORKSPACE.md)

**Who may delete what.** `python -m data_prep.synthetic --overwrite` replaces only a folder
carrying its marker `.handvae-synthetic` (written into every generated data set, the
committed `dummy_data/` included); `python -m experiments.demo --force` deletes only a
folder carrying `.handvae-demo`. Neither deletes the working directory or a parent of it,
and both check every argument (and whether the frames fit the free disk and memory) before
touching anything. The demo records each step's inputs in `<out>/steps.json` and redoes a
step whose inputs changed and every step after it (new data → models trained afresh; more
`--steps` → training resumes); it evaluates into `<workdir>/eval/test_best/`
(`experiments.launcher_evaluation.eval_dir`, the one place that knows this path).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from typing import NamedTuple


class ArgumentError(ValueError):
    """An argument is out of range, or the output folder is not one the launcher may use."""


class OutputFolder(NamedTuple):
    """A preset's output folder: its marker file, its own entries and how users name it."""

    marker: str          # file that marks the folder as the preset's, e.g. ".handvae-demo"
    layout: frozenset    # entries the preset writes (the only ones ``force`` deletes)
    owner: str           # "the demo": named in messages
    flag: str = "--out"  # the command-line flag that chose the folder
    command: str = ""    # the command that writes it, written into the marker

    def is_own(self, out: str) -> bool:
        """Whether ``out`` carries the marker, or holds only the preset's entries (older)."""
        if os.path.isfile(os.path.join(out, self.marker)):
            return True
        entries = set(os.listdir(out))
        return bool(entries) and entries <= self.layout and "data" in entries

    def delete_own_entries(self, out: str) -> list[str]:
        """Deletes the preset's own entries of ``out``; returns the other entries, kept."""
        kept = []
        for entry in sorted(os.listdir(out)):
            path = os.path.join(out, entry)
            if entry not in self.layout:
                kept.append(entry)
            elif os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        return kept

    def prepare(self, out: str, force: bool) -> None:
        """Makes ``out`` (marked); with ``force`` deletes the preset's own entries first.

        Raises:
          ArgumentError: ``out`` is a file, the working directory or one of its parents,
            or a non-empty folder the preset did not write (nothing is deleted then).
        """
        if os.path.exists(out) and not os.path.isdir(out):
            raise ArgumentError(f"{self.flag} {out} is a file; choose a folder")
        real, cwd = os.path.realpath(out), os.path.realpath(os.getcwd())
        if os.path.isdir(out) and os.listdir(out):
            if real == cwd or cwd.startswith(real.rstrip(os.sep) + os.sep):
                raise ArgumentError(f"{self.flag} {out} is the working directory or one of "
                                    "its parents; choose a new folder, e.g. results/demo")
            if not self.is_own(out):
                raise ArgumentError(
                    f"{self.flag} {out} is not empty and was not written by {self.owner} (no "
                    f"{self.marker} marker); {self.owner} will neither write into it nor "
                    f"delete it: choose another {self.flag}")
            if force:
                kept = self.delete_own_entries(out)
                if kept:
                    print(f"--force: kept {', '.join(kept)} in {out} "
                          f"(not written by {self.owner})")
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, self.marker), "w") as f:
            f.write(f"Written by `{self.command}`; --force may delete this folder.\n")


def check_integer(flag: str, value: object, low: int, *, also: Iterable[int] = ()) -> None:
    """Raises ArgumentError unless ``value`` is an int ≥ ``low`` (or one of ``also``)."""
    allowed = tuple(also)
    if isinstance(value, bool) or not isinstance(value, int) or (
            value < low and value not in allowed):
        extra = "".join(f"{v} or " for v in allowed)
        raise ArgumentError(f"{flag} must be {extra}an integer ≥ {low}, got {value!r}")


def _existing_ancestor(path: str) -> str:
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def available_memory_bytes() -> int | None:
    """Memory available to new allocations (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


# Disk per frame (raw PNGs ≈ 220 kB + built TFDS records ≈ 180 kB, measured on 50 frames)
# and host memory per frame while generating and building (job lists, annotations).
DISK_BYTES_PER_FRAME = 450_000
HOST_BYTES_PER_FRAME = 4_000


def check_size(out: str, num_frames: int) -> None:
    """Raises ArgumentError when ``num_frames`` would not fit the free disk or memory."""
    disk = num_frames * DISK_BYTES_PER_FRAME
    free = shutil.disk_usage(_existing_ancestor(out)).free
    if disk > free:
        raise ArgumentError(
            f"--num-train + --num-eval = {num_frames} frames need about {disk / 1e9:.3g} GB "
            f"of disk under {out} ({DISK_BYTES_PER_FRAME / 1e3:.0f} kB a frame), but only "
            f"{free / 1e9:.3g} GB are free; lower --num-train/--num-eval or choose another "
            "--out")
    memory, available = num_frames * HOST_BYTES_PER_FRAME, available_memory_bytes()
    if available is not None and memory > available:
        raise ArgumentError(
            f"--num-train + --num-eval = {num_frames} frames need about {memory / 1e9:.3g} GB "
            f"of memory to generate and build, but {available / 1e9:.3g} GB are available; "
            "lower --num-train/--num-eval")
