"""The launcher's evaluation of the test split in this process (the demo's metrics and figures).

The trainer already tests its best-by-validation checkpoint once, in full, at the end
(``final_metrics.json``); :func:`evaluate_owned` evaluates it again here only for what the
trainer does not write: the figures (``experiments.evaluate``). It counts only an
evaluation made as it asked (:func:`read_evaluation`), and :func:`eval_dir` is the one place
that knows where it lives.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping, Sequence
from typing import Any

from experiments import launcher, launcher_records
from experiments.launcher_records import Ledger

SPLIT, WHICH = "test", "best"


def eval_dir(workdir: str) -> str:
    """``<workdir>/eval/test_best``: where the launcher's evaluation of a run lives."""
    return os.path.join(workdir, "eval", f"{SPLIT}_{WHICH}")


def read_evaluation(workdir: str, eval_examples: int = -1) -> dict[str, Any] | None:
    """The metrics of the launcher's evaluation of ``workdir``; None when absent or foreign.

    Only an evaluation made as asked counts: of ``eval_examples`` test examples (-1: the
    whole split, and it must have covered it). Another one written to the same folder
    (``experiments.evaluate --num_examples 4 --out ...``, or one written before evaluations
    recorded their request) returns None, so the launcher evaluates again.
    """
    metrics = launcher_records._read_json(os.path.join(eval_dir(workdir), "metrics.json"))
    if not isinstance(metrics, dict) or metrics.get("requested_examples") != eval_examples:
        return None
    if eval_examples == -1 and metrics.get("full_split") is not True:
        return None
    return metrics


def evaluate_owned(runs: Sequence[launcher.RunSpec], train_inputs: Mapping[str, Mapping[str, Any]],
                   data_dir: str, eval_examples: int, ledger: Ledger,
                   timings: dict[str, Any], progress: launcher.Progress
                   ) -> dict[str, dict[str, Any]]:
    """Evaluates each run's best checkpoint on the test split here (metrics and figures).

    Returns ``{run.name: metrics}``; an evaluation is redone when its inputs changed or the
    one on disk is not the one asked for. Ledger keys: ``evaluate_<label>``.
    """
    folder = os.path.dirname(ledger.path)
    results = {}
    for run in runs:
        key = f"evaluate_{run.title}"
        inputs = {"train": dict(train_inputs[run.name]), "split": SPLIT, "which": WHICH,
                  "eval_examples": eval_examples}
        progress("evaluate", f"evaluate {run.name} from RGB only ({SPLIT} split)")
        metrics = read_evaluation(run.workdir, eval_examples)
        if ledger.done(key, inputs) and metrics is not None:
            print("  same inputs, skipped")
            timings[f"{key}_s"] = launcher_records.earlier_seconds(folder, f"{key}_s")
        else:
            launcher.require("evaluate")
            ledger.start(key)
            shutil.rmtree(eval_dir(run.workdir), ignore_errors=True)
            from experiments import evaluate  # imports jax: only when evaluating
            begin = time.perf_counter()
            evaluate.evaluate_workdir(run.workdir, split=SPLIT, which=WHICH,
                                      num_examples=eval_examples, data_dir=data_dir,
                                      name=run.name, out_dir=eval_dir(run.workdir))
            timings[f"{key}_s"] = time.perf_counter() - begin
            ledger.finish(key, inputs)
            metrics = read_evaluation(run.workdir, eval_examples)
            if metrics is None:
                raise launcher.StepFailed(f"step {key!r} wrote no metrics.json of the requested "
                                 f"examples in {eval_dir(run.workdir)}")
        results[run.name] = metrics
        print(f"  {run.name}: mean EPE {metrics['mean_epe_mm']:.2f} mm, "
              f"AUC 20–50 {metrics['auc_20_50']:.3f}")
    return results
