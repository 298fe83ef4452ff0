"""The one evaluator: predict every example of a split from RGB and score it (hand3d protocol).

In the spirit of big_vision's ``evaluators/``: the trainer (best checkpoint by validation
EPE, the final test evaluation) and ``experiments.evaluate`` (the offline report and its
figures) call :func:`evaluate` unchanged. It takes an already-jitted predict function, so
this layer never imports the trainer (``handvae/training`` builds the function;
``tests/test_layers.py``)::

    predict = lambda rgb: eval_step(variables, rgb)   # [B, S, S, 3] → [B, 21, 3]
    result = evaluator.evaluate(predict, batches, num_devices=mesh.devices.size)
    result.summary["mean_epe_mm"], result.errors_mm, result.examples["pred_pose"]

Each report made from a result carries its provenance (:func:`provenance`): data set, split,
number of examples and which checkpoint (step; best-by-validation or latest) it came from.

Evaluation protocol (moved from WORKSPACE.md)

**One evaluation path.** `handvae/evaluation/evaluator.py` is the only predict-and-score
loop (in the spirit of big_vision's `evaluators/`):
`evaluate(predict_fn, batches, *, num_devices=1, num_kept=0, desc=None) -> Evaluation`
takes a jitted `rgb [B', S, S, 3] -> pose [B', 21, 3]` (the trainer's
`step.make_eval_step` with variables bound), pads each batch once to a multiple of
`num_devices` and drops the padding, and returns `Evaluation(summary, errors_mm [N, 21],
visible [N, 21], examples)`; `examples` are the first `num_kept` batch rows (`rgb`, `pose`,
`cloud`, `visible`, `scale`) with `pred_pose` and per-example `errors_mm` for the figures
(`figures.write_model_figures` draws those predictions and runs the model only for z_rgb,
the decoded clouds and the interpolation). The trainer's validation (best checkpoint), its
final test evaluation and `experiments.evaluate`'s report all call it on the same jitted step
and device layout; evaluation never imports training (the function is passed in). The
constant-pose baseline (`metrics.constant_pose_baseline`) sits beside the metrics.

**Every test frame.** `experiments.evaluate` refuses a test split (`config.data.eval_split`)
holding fewer frames than the data set defines: the build's record
(`<data_dir>/<name>/<version>/build_report.json`, `splits.<split>.defined`) when present,
else RHD 2,728 / STB 3,000; no check for a synthetic build without a record.

**Model selection never sees the test split** (issue 10 item 2). The paper is silent on
how its checkpoint was chosen (Sec. 5.1 names only the splits: RHD "41238 samples for
training and 2728 samples for testing", STB "10 sequences for training and the other 2 for
testing"; no validation set). Choosing by test EPE would bias every
table, so the best checkpoint is chosen on `config.data.validation_split` ("validation",
carved from the training data by the builders) and the test split (`config.data.eval_split`)
is evaluated once, at the end, on that checkpoint. A config whose `data.validation_split`
is the test split is a `ValueError` naming the field (`evaluator.check_selection_split`).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import tqdm

from handvae.evaluation import metrics

Batch = Mapping[str, np.ndarray]
# Batch keys kept for the first ``num_kept`` examples (those a batch carries), for figures.
EXAMPLE_KEYS = ("rgb", "pose", "cloud", "visible", "scale")
# Names of the checkpoints a number can come from.
CHECKPOINTS = {"best": "best-by-validation", "latest": "latest"}


@dataclasses.dataclass
class Evaluation:
    """What :func:`evaluate` returns.

    Attributes:
      summary: :func:`metrics.summarize_visible_and_all` of all examples (JSON-ready):
        hand3d's figures over visible keypoints at the top level, all 21 under
        ``all_keypoints``, plus ``constant_pose_baseline``.
      errors_mm: [N, 21] keypoint errors, millimetres.
      visible: [N, 21] bool visibility.
      examples: the first K examples: the batch's ``rgb`` [K, S, S, 3], ``pose`` [K, 21, 3],
        ``cloud`` [K, P, 3] (when batches carry it), ``visible``, ``scale``, and
        ``pred_pose`` [K, 21, 3] and ``errors_mm`` [K] (mean keypoint error per example).
    """

    summary: dict[str, Any]
    errors_mm: np.ndarray
    visible: np.ndarray
    examples: dict[str, np.ndarray]

    def scalars(self) -> dict[str, float]:
        """The summary's numeric scalars (for TensorBoard / ``metrics.jsonl``)."""
        return {k: float(v) for k, v in self.summary.items()
                if isinstance(v, numbers.Number) and not isinstance(v, bool)}


def _pad(rgb: np.ndarray, multiple: int) -> np.ndarray:
    extra = (-rgb.shape[0]) % multiple
    return rgb if extra == 0 else np.pad(rgb, [(0, extra)] + [(0, 0)] * (rgb.ndim - 1))


def evaluate(predict_fn: Callable[[np.ndarray], Any], batches: Iterable[Batch], *,
             num_devices: int = 1, num_kept: int = 0, desc: str | None = None) -> Evaluation:
    """Predicts every batch and scores it by hand3d's protocol.

    Args:
      predict_fn: jitted ``rgb [B', S, S, 3] -> pose [B', 21, 3]`` (normalised, root-relative:
        the contract's ``pose``), e.g. ``handvae.training.step.make_eval_step``'s function with
        the variables bound. ``B'`` is the batch size padded to a multiple of ``num_devices``.
      batches: finite iterable of batches with ``rgb``, ``pose`` [B, 21, 3], ``scale`` [B]
        (metres) and ``visible`` [B, 21] (``handvae.data.spec``); the last may be smaller.
      num_devices: the device count the predict function splits a batch over; every batch
        is zero-padded to a multiple of it and the padding's predictions dropped.
      num_kept: how many leading examples to return in ``examples`` (for figures).
      desc: progress-bar label; None shows no bar.

    Returns:
      An :class:`Evaluation`.

    Raises:
      ValueError: no batches (names the fix) or bad shapes.
    """
    if num_devices < 1:
        raise ValueError(f"num_devices must be >= 1, got {num_devices}")
    errors, visible, poses, scales = [], [], [], []
    kept: dict[str, list[np.ndarray]] = {}
    for batch in tqdm.tqdm(batches, desc=desc, unit="batch", disable=desc is None,
                           dynamic_ncols=True, leave=False):
        rgb = np.asarray(batch["rgb"])
        n = rgb.shape[0]
        pred = np.asarray(predict_fn(_pad(rgb, num_devices)))[:n]
        err = np.asarray(metrics.keypoint_errors_mm(pred, batch["pose"], batch["scale"]))
        errors.append(err)
        visible.append(np.asarray(batch["visible"]).astype(bool))
        poses.append(np.asarray(batch["pose"]))
        scales.append(np.asarray(batch["scale"]))
        take = min(num_kept - sum(len(x) for x in kept.get("pred_pose", [])), n)
        if take > 0:
            for key in EXAMPLE_KEYS:
                if key in batch:
                    kept.setdefault(key, []).append(np.asarray(batch[key][:take]))
            kept.setdefault("pred_pose", []).append(pred[:take])
            kept.setdefault("errors_mm", []).append(err[:take].mean(axis=1))
    if not errors:
        raise ValueError("evaluation got no batches: check the split name "
                         "(config.data.validation_split / eval_split), that the data set is "
                         "built, and config.num_eval_examples")
    errors_mm, vis = np.concatenate(errors), np.concatenate(visible)
    summary = metrics.summarize_visible_and_all(errors_mm, vis)
    summary["constant_pose_baseline"] = metrics.constant_pose_baseline(
        np.concatenate(poses), np.concatenate(scales), vis)
    return Evaluation(summary=summary, errors_mm=errors_mm, visible=vis,
                      examples={k: np.concatenate(v) for k, v in kept.items()})


def provenance(*, dataset: str, split: str, num_examples: int, which: str,
               checkpoint_step: int | None, selection_split: str | None = None
               ) -> dict[str, Any]:
    """Where a number comes from, stored in every report and final-metrics record.

    Args:
      dataset: ``config.data.dataset``.
      split: the evaluated split.
      num_examples: examples evaluated.
      which: "best" (lowest validation EPE) or "latest".
      checkpoint_step: the checkpoint's training step (None: the in-memory state).
      selection_split: the split the best checkpoint was chosen on.

    Returns:
      ``{"dataset", "split", "num_examples", "which", "checkpoint", "checkpoint_step",
      "selection_split"}`` where ``checkpoint`` is "best-by-validation" or "latest".
    """
    if which not in CHECKPOINTS:
        raise ValueError(f"which must be one of {sorted(CHECKPOINTS)}, got {which!r}")
    return {"dataset": dataset, "split": split, "num_examples": int(num_examples),
            "which": which, "checkpoint": CHECKPOINTS[which],
            "checkpoint_step": None if checkpoint_step is None else int(checkpoint_step),
            "selection_split": selection_split}


def check_selection_split(data_config: Any) -> None:
    """Refuses a config that would choose the best checkpoint on the test split.

    Args:
      data_config: ``config.data`` with ``validation_split`` (selection) and ``eval_split``
        (the test split, evaluated once at the end).

    Raises:
      ValueError: naming ``config.data.validation_split`` when it is missing, is the test
        split, or equals ``config.data.eval_split``.
    """
    selection = data_config.get("validation_split")
    if not selection:
        raise ValueError("config.data.validation_split is not set: set it to the split the "
                         "best checkpoint is chosen on (\"validation\"), never the test split")
    test = data_config.get("eval_split")
    if selection in ("test", test):
        raise ValueError(f"config.data.validation_split={selection!r} is the test split "
                         f"(config.data.eval_split={test!r}): the best checkpoint must be "
                         "chosen on held-out training data; set it to \"validation\"")
