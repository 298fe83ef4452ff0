"""The launcher's records: what ran with which inputs, each run's results, the report's pieces.

Plain JSON files, read back by a later call to skip what is done (see
:mod:`experiments.launcher`):

- :class:`Ledger`: a folder's ``steps.json``, step → the inputs it finished with;
- a run record (``<workdir>/<record file>``): the run's identity (config, data, scale), its
  wall time, validation curve (:func:`validation_curve`) and test metrics
  (:func:`read_test_metrics`); :func:`finished_record` reads it back;
- :func:`timings_table`, :func:`earlier_seconds`: the wall-time section of a report.

No imports from ``experiments`` presets: the reports (``reproduce_report``, the demo's) and
the launcher import this module, never the other way round.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS_FILE = "steps.json"
TIMINGS_FILE = "timings.json"


def _read_json(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_json(path: str, payload: Any, **kwargs: Any) -> None:
    """Writes ``payload`` to ``path`` through a temporary file (no half-written record)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(payload, f, **{"indent": 1, **kwargs})
    os.replace(tmp, path)


class Ledger:
    """``<folder>/steps.json``: the inputs each finished step ran with.

    A step is done when its recorded inputs equal its current inputs (and, the caller
    checks, its outputs exist); each step's inputs include those of the steps it reads, so a
    change anywhere redoes that step and every step after it. A step being redone is
    forgotten first (:meth:`start`), so an interruption leaves it not done.
    """

    def __init__(self, folder: str, filename: str = STEPS_FILE):
        self.path = os.path.join(folder, filename)
        steps = _read_json(self.path)
        self.steps: dict[str, Any] = steps if isinstance(steps, dict) else {}

    def done(self, step: str, inputs: Mapping[str, Any]) -> bool:
        return self.steps.get(step) == inputs

    def recorded(self, step: str) -> Any:
        return self.steps.get(step)

    def _save(self) -> None:
        write_json(self.path, self.steps, indent=2, sort_keys=True)

    def start(self, step: str) -> None:
        """Forgets ``step`` (it is being redone)."""
        if self.steps.pop(step, None) is not None:
            self._save()

    def finish(self, step: str, inputs: Mapping[str, Any]) -> None:
        self.steps[step] = dict(inputs)
        self._save()


def file_digest(path: str) -> str:
    """The first 16 hex digits of ``path``'s SHA-256 (a config file's identity)."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def trained(workdir: str, steps: int) -> bool:
    """Whether ``workdir``'s trainer finished at least ``steps`` steps (final_metrics.json)."""
    final = _read_json(os.path.join(workdir, "final_metrics.json"))
    return isinstance(final, dict) and int(final.get("step", -1)) >= steps


def read_test_metrics(workdir: str) -> dict[str, Any]:
    """The test-split metrics the trainer wrote at the end of the run.

    The trainer evaluates the test split once, in full, on the best-by-validation checkpoint
    and stores the summary (EPE, AUC, PCK curve, per-joint errors, provenance) under
    ``"test"`` in ``<workdir>/final_metrics.json`` (``handvae.training.loop``).

    Raises:
      FileNotFoundError: the run has not finished (the message names the file).
      KeyError: the run finished without a test evaluation (no evaluation data).
    """
    path = os.path.join(workdir, "final_metrics.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: the run has not finished; rerun python -m "
                                f"experiments.train with --workdir {workdir} to resume it")
    with open(path) as f:
        final = json.load(f)
    if "test" not in final:
        raise KeyError(f"{path} has no 'test' entry: the run trained without evaluation data")
    return final["test"]


def validation_curve(workdir: str) -> dict[str, Any]:
    """The run's validation mean EPE at every evaluation and the step selected on it.

    Read from ``<workdir>/metrics.jsonl`` (the trainer's ``validation`` rows; a resumed
    run's repeated steps keep the last value). ``best_step`` is the step of the lowest
    validation mean EPE, the checkpoint the trainer tested.
    """
    path = os.path.join(workdir, "metrics.jsonl")
    curve: dict[int, float] = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                if row.get("split") == "validation" and "mean_epe_mm" in row:
                    curve[int(row["step"])] = float(row["mean_epe_mm"])
    steps = sorted(curve)
    best = min(steps, key=lambda s: (curve[s], s)) if steps else None
    return {"steps": steps, "mean_epe_mm": [curve[s] for s in steps], "best_step": best,
            "best_mean_epe_mm": curve[best] if best is not None else None}


def read_record(path: str, identity: Mapping[str, Any]) -> dict[str, Any] | None:
    """The run record at ``path`` when its fields equal ``identity``, else None."""
    record = _read_json(path)
    if not isinstance(record, dict):
        return None
    return record if all(record.get(k) == v for k, v in identity.items()) else None


def write_run_record(workdir: str, filename: str, identity: Mapping[str, Any],
                     train_s: float, **fields: Any) -> dict[str, Any]:
    """Writes and returns a finished run's record: identity, fields, time, curve, test."""
    record = {**identity, **fields, "train_s": train_s,
              "validation": validation_curve(workdir), "test": read_test_metrics(workdir)}
    write_json(os.path.join(workdir, filename), record)
    return record


def earlier_seconds(folder: str, key: str) -> Any:
    """A skipped step's time as measured by the run that did it (``timings.json``)."""
    timings = _read_json(os.path.join(folder, TIMINGS_FILE))
    value = timings.get(key) if isinstance(timings, dict) else None
    if isinstance(value, (int, float)):
        return f"{value:.0f} s (earlier run)"
    return value if isinstance(value, str) and "earlier run" in value else "skipped (exists)"


def _seconds(value: Any) -> str:
    return f"{value:.0f} s" if isinstance(value, (int, float)) else str(value)


def timings_table(timings: Mapping[str, Any]) -> str:
    """A Markdown ``| step | time |`` table of ``{step_s: seconds or text}``."""
    rows = "\n".join(f"| {k.removesuffix('_s')} | {_seconds(v)} |" for k, v in timings.items())
    return "| step | time |\n|---|---:|\n" + rows + "\n"
