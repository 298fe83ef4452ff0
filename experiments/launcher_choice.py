r"""How the launcher chooses between sequential runs and populations (``--population``).

Sweep (``experiments.sweep --population``), reproduce (``experiments.reproduce
--population``) and the demo ask the same question: train runs that differ only in population
fields one after another, or as one vmapped program (``handvae.training.population``)?

- ``off``: one run after another (the launcher's ``sequential`` executor);
- ``vmap``: each group of two or more such runs as one population (``population``);
- ``auto``: :func:`choose_population`'s measured rule. ``vmap`` only where a committed
  ``benchmarks/figures/*/population.json`` (``benchmarks/population.py``) of this device kind
  measured a population of that size at ≥ :data:`AUTO_MARGIN` × one run's member-steps/s
  (the lowest ratio over its strategies and scales, at the largest measured K ≤ the group's
  size, for shared or per-member batches as the group trains); sequential where it measured
  less or nothing. On 2 CPU cores the committed figures' lowest ratio at each K is
  0.47–1.00×, so ``auto`` is sequential there; the caller prints the choice and its reason.

``launcher.choose_executor`` applies the rule to a launcher plan (``RunSpec``s with a
``group``) and names the executor. The sweep trains in-process and reads its device kind from
JAX here; a launcher parent asks a short child (``launcher.read_device_kind``), so it stays
free of JAX and of the accelerator's memory. This module reads files only and starts nothing.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable

POPULATION_MODES = ("auto", "vmap", "off")
# auto picks vmap only when measured at least this much faster than one run: the 2-core
# figures scatter by ±0.25 at high load (benchmarks/figures/cpu_2026-12-07).
AUTO_MARGIN = 1.1
FIGURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "benchmarks", "figures")
EXECUTOR_OF_MODE = {"off": "sequential", "vmap": "population"}  # → launcher.EXECUTORS


def _jax_device_kind() -> str:
    import jax  # only here: a launcher parent that passes a device kind never loads JAX
    return jax.devices()[0].device_kind


def measured_ratio(device_kind: str, members: int, *, shared_batch: bool,
                   figures: str = FIGURES) -> tuple[float | None, str]:
    """The lowest measured member-steps/s of a population relative to one run, and its source.

    Reads every ``<figures>/*/population.json`` of ``device_kind`` (``benchmarks/population.py``)
    and takes, over its strategies and scales, the ratio at the largest measured K ≤
    ``members``, shared or per-member batches. ``(None, reason)`` when nothing was measured.
    """
    ratios, sources = [], []
    for path in sorted(glob.glob(os.path.join(figures, "*", "population.json"))):
        with open(path) as f:
            figure = json.load(f)
        if figure.get("device_kind") != device_kind:
            continue
        for case in figure.get("cases", []):
            if case.get("shared_batch") != shared_batch:
                continue
            measured = {int(k): float(v) for k, v in case["member_steps_per_s_ratio"].items()}
            ks = [k for k in measured if 1 < k <= members]
            if ks:
                ratios.append(measured[max(ks)])
                sources.append(os.path.relpath(path, os.path.dirname(figures)))
    if not ratios:
        return None, (f"no population.json for device kind {device_kind!r} under {figures} "
                      "(run benchmarks/population.py)")
    return min(ratios), ", ".join(sorted(set(sources)))


def choose_population(mode: str, members: int, *, shared_batch: bool,
                      device_kind: str | Callable[[], str] | None = None,
                      figures: str = FIGURES) -> tuple[str, str]:
    """``("vmap" | "off", why)``: ``mode`` itself, or for ``auto`` the measured rule.

    ``auto`` gives ``vmap`` only when the measured member-steps/s ratio for ``members`` on
    this device kind (:func:`measured_ratio`) is at least :data:`AUTO_MARGIN`, so never
    slower than sequential where it was measured, and sequential where it was not.

    Args:
      mode: one of :data:`POPULATION_MODES`.
      members: the group's size K.
      shared_batch: whether the members would share one batch (equal seeds).
      device_kind: the device kind, a function returning it (called only when the rule
        needs it), or None for this process's JAX default device
        (``launcher.read_device_kind`` asks a child instead).
      figures: the folder of benchmark figures.

    Raises:
      ValueError: an unknown mode.
    """
    if mode not in POPULATION_MODES:
        raise ValueError(f"--population must be one of {POPULATION_MODES}, got {mode!r}")
    if mode != "auto":
        return mode, f"--population={mode}"
    if members < 2:
        return "off", "auto: no group of two or more runs differing only in population fields"
    kind = device_kind or _jax_device_kind
    kind = kind() if callable(kind) else kind
    ratio, source = measured_ratio(kind, members, shared_batch=shared_batch, figures=figures)
    if ratio is None:
        return "off", f"auto: sequential, {source}"
    choice = "vmap" if ratio >= AUTO_MARGIN else "off"
    return choice, (f"auto: {'vmap' if choice == 'vmap' else 'sequential'}, a population of "
                    f"{members} measured {ratio:.2f}× one run's member-steps/s on "
                    f"{kind!r} ({source})")
