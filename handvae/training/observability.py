"""What a run tells about itself: parameter counts, step timing, device memory, traces.

The loop (:mod:`handvae.training.loop`) calls these helpers at a few fixed points; each is a
pure function or a small object so it can be tested without training.

* :func:`parameter_counts` / :func:`parameter_overview`: parameters per module, logged once
  at the start of a run (a tree walk over ``state.params``; ``clu.parameter_overview`` would do
  the same, but ``clu`` is not a dependency and the table needs nothing of it).
* :func:`timing_metrics`: per logging window, ``steps_per_sec``, ``step_time_ms`` (wall time
  per step, waits included), ``data_wait_ms`` (time per step spent in ``next(batches)``) and
  ``data_wait_fraction`` (their ratio). The step is dispatched asynchronously, so the wall
  time per step is the step's cost once the pipeline of dispatched steps is full; the wait
  overlaps with the previous step on the device.
* :func:`device_memory_metrics`: ``device_memory_bytes_in_use`` and
  ``device_memory_peak_bytes`` (max over this process's devices) where the backend reports
  them (``Device.memory_stats()``: GPU, TPU). XLA:CPU reports nothing, and then nothing is
  written: no zeros that look like a measurement.
* :class:`StepProfiler`: ``config.profile_steps = "a,b"`` writes a ``jax.profiler`` trace of
  steps a..b (inclusive; "a" alone is one step) into ``<workdir>/profile/`` (TensorBoard's
  profile plugin or Perfetto read it). The trace starts before step a's batch is fetched, so
  the input wait is in it, and stops after step b's results are ready.

Decision (moved from WORKSPACE.md)

**Observability** (issue 26; `handvae/training/observability.py`, four hooks in the loop):
`config.profile_steps="a,b"` → `jax.profiler` trace in `<workdir>/profile/`; parameters
per module printed at start by a tree walk (`clu` is not a dependency); `step_time_ms`,
`data_wait_ms` and, where `Device.memory_stats()` reports it, device memory in the train
metrics (XLA:CPU reports none: omitted, not zero).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import numpy as np

PROFILE_DIR = "profile"


# -- parameters ------------------------------------------------------------------------------
def _leaves_with_paths(tree: Any) -> list[tuple[tuple[str, ...], Any]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    out = []
    for path, leaf in flat:
        names = tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                      for k in path)
        out.append((names, leaf))
    return out


def parameter_counts(params: Any, depth: int = 1) -> dict[str, int]:
    """Number of parameters per module path, cut at ``depth`` levels.

    Args:
      params: a parameter pytree (``state.params``: nested dicts of arrays, or their shapes).
      depth: 1 gives the top-level modules (``rgb_encoder``, ``pose_decoder``, ...); 2 one
        level further (``rgb_encoder/trunk``, ``rgb_encoder/head``).

    Returns:
      ``{"module/path": count}`` in the tree's order; leaves shallower than ``depth`` keep
      their own path.
    """
    counts: dict[str, int] = {}
    for names, leaf in _leaves_with_paths(params):
        key = "/".join(names[:depth]) if names else "<root>"
        counts[key] = counts.get(key, 0) + int(np.prod(np.shape(leaf), dtype=np.int64))
    return counts


def parameter_overview(params: Any, depth: int = 2) -> str:
    """A text table of :func:`parameter_counts` at depth 1 and ``depth`` with dtypes, bytes
    and the total, e.g.::

        module                                  parameters  dtype      MiB
        rgb_encoder                             11,209,856  float32   42.8
          rgb_encoder/trunk                     11,176,512  float32   42.6
        ...
        total                                   11,262,019            43.0
    """
    top = parameter_counts(params, 1)
    inner = parameter_counts(params, depth)
    leaves = _leaves_with_paths(params)
    dtypes: dict[str, set] = {}
    nbytes: dict[str, int] = {}
    for names, leaf in leaves:
        key = names[0] if names else "<root>"
        dtype = np.dtype(getattr(leaf, "dtype", np.float32))
        dtypes.setdefault(key, set()).add(dtype.name)
        nbytes[key] = nbytes.get(key, 0) + int(np.prod(np.shape(leaf), dtype=np.int64)
                                              ) * dtype.itemsize
    lines = [f"{'module':<44}{'parameters':>14}  {'dtype':<10}{'MiB':>8}"]
    for name, count in top.items():
        kinds = ",".join(sorted(dtypes.get(name, ())))
        lines.append(f"{name:<44}{count:>14,}  {kinds:<10}{nbytes.get(name, 0) / 2**20:>8.1f}")
        if depth > 1:
            for sub, sub_count in inner.items():
                if sub.startswith(name + "/"):
                    lines.append(f"  {sub:<42}{sub_count:>14,}")
    total = sum(top.values())
    lines.append(f"{'total':<44}{total:>14,}  {'':<10}{sum(nbytes.values()) / 2**20:>8.1f}")
    return "\n".join(lines)


# -- timing and memory -----------------------------------------------------------------------
def timing_metrics(elapsed_s: float, data_wait_s: float, steps: int) -> dict[str, float]:
    """Throughput figures of one logging window.

    Args:
      elapsed_s: wall seconds of the window (evaluation and checkpoint pauses excluded).
      data_wait_s: seconds of it spent waiting for the next batch.
      steps: steps in the window (≥ 1).

    Returns:
      ``steps_per_sec``, ``step_time_ms`` (wall ms per step), ``data_wait_ms`` (ms per step
      waiting for input) and ``data_wait_fraction`` (share of the window waiting).
    """
    elapsed_s, steps = max(float(elapsed_s), 1e-9), max(int(steps), 1)
    return {"steps_per_sec": steps / elapsed_s,
            "step_time_ms": 1e3 * elapsed_s / steps,
            "data_wait_ms": 1e3 * float(data_wait_s) / steps,
            "data_wait_fraction": float(data_wait_s) / elapsed_s}


def device_memory_metrics(devices: Iterable[Any] | None = None) -> dict[str, float]:
    """Bytes in use and peak bytes of the most loaded local device, where reported.

    Returns ``{"device_memory_bytes_in_use", "device_memory_peak_bytes"}`` (floats, max over
    ``devices``, default ``jax.local_devices()``), only the keys some device reports; ``{}``
    on backends without ``memory_stats()`` (XLA:CPU returns None).
    """
    devices = jax.local_devices() if devices is None else devices
    names = {"bytes_in_use": "device_memory_bytes_in_use",
             "peak_bytes_in_use": "device_memory_peak_bytes"}
    out: dict[str, float] = {}
    for device in devices:
        try:
            stats = device.memory_stats()
        except Exception:  # some backends raise instead of returning None
            stats = None
        if not isinstance(stats, Mapping):
            continue
        for key, name in names.items():
            if key in stats:
                out[name] = max(out.get(name, 0.0), float(stats[key]))
    return out


# -- profiler --------------------------------------------------------------------------------
def parse_profile_steps(value: Any) -> tuple[int, int] | None:
    """``config.profile_steps`` → (first, last) inclusive, or None when empty.

    Accepts ``""``/None (off), ``"a,b"``, ``"a"``, an int or a pair.

    Raises:
      ValueError: not one or two non-negative integers with first ≤ last (names the field).
    """
    if value is None or value == "" or value == ():
        return None
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
    elif isinstance(value, (int, np.integer)):
        parts = [value]
    else:
        parts = list(value)
    try:
        steps = [int(p) for p in parts]
    except (TypeError, ValueError):
        steps = []
    if len(steps) == 1:
        steps = steps * 2
    if len(steps) != 2 or steps[0] < 0 or steps[0] > steps[1]:
        raise ValueError(f"config.profile_steps must be 'first,last' (0 <= first <= last, "
                         f"inclusive) or empty, got {value!r}")
    return steps[0], steps[1]


class StepProfiler:
    """Starts a ``jax.profiler`` trace before step ``first`` and stops it after ``last``.

    Call :meth:`before` with the step about to run (before its batch is fetched) and
    :meth:`after` with the step and its outputs; :meth:`close` stops a trace still running
    (a run that ended or failed inside the range). A resumed run that starts inside the range
    traces from its first step; one that starts after it traces nothing.

    Args:
      steps: ``config.profile_steps`` (see :func:`parse_profile_steps`).
      workdir: the trace goes to ``<workdir>/profile``.
      enabled: False on processes that should not trace.
    """

    def __init__(self, steps: Any, workdir: str, *, enabled: bool = True):
        self.range = parse_profile_steps(steps) if enabled else None
        self.directory = os.path.join(workdir, PROFILE_DIR)
        self.active = False
        self.done = False

    def before(self, step: int) -> None:
        if self.range is None or self.active or self.done:
            return
        first, last = self.range
        if first <= step <= last:
            os.makedirs(self.directory, exist_ok=True)
            jax.profiler.start_trace(self.directory)
            self.active = True

    def after(self, step: int, outputs: Any = None) -> None:
        if self.active and step >= self.range[1]:
            jax.block_until_ready(outputs)   # the last step's device work belongs in the trace
            self._stop()

    def _stop(self) -> None:
        jax.profiler.stop_trace()
        self.active, self.done = False, True

    def close(self) -> None:
        if self.active:
            self._stop()
