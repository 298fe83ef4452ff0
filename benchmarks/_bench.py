"""Plumbing shared by the benchmark scripts: the ``--smoke`` mode and lowering for a GPU on a CPU.

``--smoke`` runs a script's own code paths at tiny sizes and a few steps (seconds) and writes
the same JSON, so an API change that breaks a benchmark fails ``make test``
(``tests/benchmarks/test_benchmarks_smoke.py``); its figures mean nothing.

:func:`lower_for` traces a jitted function and lowers it for another platform (``cuda``) on
this machine, with ``jax.default_backend()`` reporting that platform while it traces, so the
library picks the branch it would pick there (the Pallas auction compiled for Triton rather
than interpreted). A GPU-only branch of a benchmark is thereby checked up to XLA's compiler
without a GPU.

:func:`write_figures` is the one JSON writer of the scripts' results: to ``--out``, or by
default to ``benchmarks/figures/<machine>_<date>/<name>`` (:func:`figures_dir`). JAX is
imported only by the functions that need it, so a script that loads it lazily
(``trainer_rate.py``) still does after importing this module.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any
from unittest import mock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ``jax.default_backend()`` names a platform's backend, lowering names its target.
_BACKEND_OF_PLATFORM = {"cuda": "gpu", "rocm": "gpu", "tpu": "tpu", "cpu": "cpu"}
PLATFORMS = tuple(_BACKEND_OF_PLATFORM)


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
               smoke: dict[str, Any]) -> argparse.Namespace:
    """Adds ``--smoke`` and parses ``argv``; with it, ``smoke`` replaces the parser's defaults.

    Flags given explicitly still win, so ``--smoke --variant pallas`` runs the Pallas variant
    at the smoke sizes.
    """
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, a few steps: checks that the script runs (seconds); "
                             f"sets {', '.join(f'--{k}' for k in smoke)}")
    args = parser.parse_args(argv)
    if args.smoke:
        parser.set_defaults(**smoke)
        args = parser.parse_args(argv)
    return args


@contextlib.contextmanager
def default_backend(platform: str | None) -> Iterator[None]:
    """``jax.default_backend()`` answers ``platform``'s backend inside (None: unchanged).

    The library reads it when it traces (the auction's default variant, whether Pallas runs
    in its interpreter), so this is what makes a CPU lowering take the GPU's branch.
    """
    if platform is None:
        yield
        return
    import jax

    backend = _BACKEND_OF_PLATFORM[platform]
    # Jitted library functions cache their traces by argument, not by backend: one traced on
    # this machine would be reused for the other platform, and one traced for the other
    # platform would later run here. Emptied on the way in and on the way out.
    jax.clear_caches()
    try:
        with mock.patch.object(jax, "default_backend", lambda: backend):
            yield
    finally:
        jax.clear_caches()


def abstract(tree: Any) -> Any:
    """``jax.ShapeDtypeStruct`` leaves for the array leaves of ``tree``: shapes, no data."""
    import jax

    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def lower_for(jitted: Any, args: Sequence[Any], platform: str) -> tuple[Any, float]:
    """Traces ``jitted(*args)`` and lowers it for ``platform`` without compiling it.

    Args:
      jitted: a ``jax.jit`` function.
      args: its arguments, arrays or ``jax.ShapeDtypeStruct`` (:func:`abstract`).
      platform: the lowering target, one of :data:`PLATFORMS` (e.g. ``cuda``).

    Returns:
      The ``jax.stages.Lowered`` and the seconds that tracing and lowering took.
    """
    start = time.perf_counter()
    with default_backend(platform):
        lowered = jitted.trace(*args).lower(lowering_platforms=(platform,))
    return lowered, time.perf_counter() - start


def triton_kernels(lowered: Any) -> int:
    """How many Pallas kernels ``lowered`` hands to Triton (0 where none, or interpreted)."""
    return lowered.as_text().count("@__gpu$xla.gpu.triton(")


def machine_name() -> str:
    """``cpu`` or the accelerator's kind in lower case (``nvidia-h200``): the figures' folder."""
    import jax

    device = jax.devices()[0]
    return "cpu" if device.platform == "cpu" else device.device_kind.lower().replace(" ", "-")


def figures_dir() -> str:
    """``benchmarks/figures/<machine>_<date>`` of this checkout (UTC date)."""
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    return os.path.join(REPO, "benchmarks", "figures", f"{machine_name()}_{today}")


def write_figures(results: Any, out: str | os.PathLike | None, name: str, *,
                  announce: bool = True) -> str:
    """Writes ``results`` as indented JSON; returns the file's path.

    Args:
      results: the figures, JSON-serialisable.
      out: the file (``--out``); empty or None: ``<figures_dir()>/<name>``.
      name: the default file name, e.g. ``precision.json``.
      announce: print ``wrote PATH``.

    The folder is created; the file is replaced whole, so a script may call this after each
    measurement and a run cut off keeps what it measured.
    """
    path = os.fspath(out) if out else os.path.join(figures_dir(), name)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    if announce:
        print(f"wrote {path}", flush=True)
    return path
