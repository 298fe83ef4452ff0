r"""Evaluates a trained work directory from RGB only, by hand3d's protocol.

Usage::

    python -m experiments.evaluate --workdir workdirs/s4_rhd [--split test] [--which best]

Restores the best checkpoint (lowest validation mean EPE; ``--which latest`` for the newest),
predicts every pose of the split from the RGB crop alone, restores the known root and scale
(``handvae/data/spec.py``) and writes, under ``<workdir>/eval/`` (or ``--out``):

=========================== ==============================================================
``metrics.json``            ``summarize_errors`` (mean/median EPE mm, per-joint errors, PCK
                            curve, AUC 20–50 and 0–50) plus what was evaluated
``metrics.md``              the same as Markdown tables
``pck.png``                 3-D PCK over 20–50 mm, as the paper's Figs. 5–7
``poses.png``               predicted (colour) over ground-truth (grey) poses
``reconstruction.png``      Fig. 3: clouds decoded from z_rgb beside the ground-truth cloud
                            and the RGB crop (strategies with a cloud decoder)
``interpolation.png``       Figs. 1/4: poses (and clouds) decoded along z_rgb(a) → z_rgb(b)
=========================== ==============================================================
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import numpy as np
import tqdm
from absl import app, flags

from handvae.evaluation import figures, metrics, report

EVAL_DIR = "eval"
METRICS_FILE = "metrics.json"


def constant_pose_baseline(poses: np.ndarray, scales: np.ndarray, visible: np.ndarray
                           ) -> dict[str, float]:
    """Scores of always predicting the split's own mean normalised pose (no image at all).

    A floor for "did the model learn anything": a model must beat this constant guess, which
    is even a little optimistic (it is fitted on the evaluated examples).

    Args:
      poses: [N, 21, 3] ground-truth normalised poses; scales: [N] metres; visible: [N, 21].

    Returns:
      ``mean_epe_mm``, ``median_epe_mm``, ``auc_20_50``, ``auc_0_50`` of that guess.
    """
    guess = np.broadcast_to(poses.mean(axis=0), poses.shape)
    summary = metrics.summarize_errors(metrics.keypoint_errors_mm(guess, poses, scales), visible)
    return {k: summary[k] for k in ("mean_epe_mm", "median_epe_mm", "auc_20_50", "auc_0_50")}


def evaluate_workdir(workdir: str, *, split: str = "test", which: str = "best",
                     num_examples: int = -1, batch_size: int | None = None,
                     out_dir: str | None = None, data_dir: str | None = None,
                     num_figure_examples: int = 4, make_figures: bool = True,
                     name: str | None = None) -> dict[str, Any]:
    """Evaluates a work directory's checkpoint on a split and writes the report files.

    Args:
      workdir: a training work directory (``<workdir>/config.json`` and checkpoints).
      split: data split to evaluate (TFDS split name of the config's data set).
      which: "best" (lowest validation EPE) or "latest" checkpoint.
      num_examples: how many examples of the split; -1 for all.
      batch_size: evaluation batch size; default the config's.
      out_dir: where to write; default ``<workdir>/eval``.
      data_dir: TFDS data_dir overriding the config's ``data.data_dir``.
      num_figure_examples: examples shown in the qualitative figures (0: none).
      make_figures: write poses/reconstruction/interpolation figures.
      name: label of the model in tables and plots; default the strategy name.

    Returns:
      The metrics dict written to ``metrics.json``: ``summarize_errors``'s keys plus
      ``workdir``, ``split``, ``which``, ``name``, ``strategy``, ``dataset``, ``seconds``,
      ``files`` and ``constant_pose_baseline`` (:func:`constant_pose_baseline`).
    """
    from handvae.data import pipeline
    from handvae.models import vae
    from handvae.training import checkpoint

    start = time.perf_counter()
    config, model, variables = checkpoint.restore_for_inference(workdir, which=which)
    if data_dir:
        config.data.data_dir = data_dir
    out_dir = out_dir or os.path.join(workdir, EVAL_DIR)
    os.makedirs(out_dir, exist_ok=True)
    name = name or config.model.strategy

    predict = jax.jit(lambda v, rgb: vae.predict_pose(model, v, rgb))
    batches = pipeline.eval_batches(config.data, batch_size or config.batch_size, split=split,
                                    num_examples=num_examples)
    errors, visible, targets, scales = [], [], [], []
    examples: dict[str, list[np.ndarray]] = {"rgb": [], "pose": [], "cloud": []}
    kept = 0
    for batch in tqdm.tqdm(batches, desc=f"evaluate {name} ({split})", unit="batch",
                           dynamic_ncols=True):
        pred = np.asarray(predict(variables, batch["rgb"]))
        errors.append(np.asarray(metrics.keypoint_errors_mm(pred, batch["pose"],
                                                            batch["scale"])))
        visible.append(np.asarray(batch["visible"]))
        targets.append(np.asarray(batch["pose"]))
        scales.append(np.asarray(batch["scale"]))
        take = min(num_figure_examples - kept, pred.shape[0])
        if take > 0:
            for key in ("rgb", "pose", "cloud"):
                examples[key].append(np.asarray(batch[key][:take]))
            kept += take
    if not errors:
        raise ValueError(f"split {split!r} of {config.data.dataset} gave no examples; check "
                         "--split and that the data set is built (see experiments/README.md)")
    errors_mm = np.concatenate(errors)
    summary = metrics.summarize_errors(errors_mm, np.concatenate(visible))
    baseline = constant_pose_baseline(np.concatenate(targets), np.concatenate(scales),
                                      np.concatenate(visible))

    files = [os.path.join(out_dir, f) for f in (METRICS_FILE, "metrics.md", "pck.png")]
    report.plot_pck({name: summary}, files[2],
                    title=f"{config.data.dataset} {split}: 3D PCK")
    if make_figures and kept > 0:
        shown = {k: np.concatenate(v) for k, v in examples.items()}
        shown["errors_mm"] = errors_mm[:kept].mean(axis=1)
        files += figures.write_model_figures(model, variables, shown, out_dir, name=name)
    result = dict(summary)
    result.update(workdir=os.path.abspath(workdir), split=split, which=which, name=name,
                  strategy=config.model.strategy, dataset=config.data.dataset,
                  constant_pose_baseline=baseline, seconds=time.perf_counter() - start,
                  files=[os.path.relpath(f, out_dir) for f in files])
    with open(files[1], "w") as f:
        f.write(report.metrics_markdown(summary, title=f"{name} on {config.data.dataset} "
                                                       f"{split}"))
        f.write("\nConstant guess (the split's mean pose, no image): mean EPE "
                f"{baseline['mean_epe_mm']:.2f} mm, AUC 20–50 {baseline['auc_20_50']:.3f}.\n")
    report.write_json(files[0], result)
    return result


_WORKDIR = flags.DEFINE_string("workdir", None, "Training work directory.", required=True)
_SPLIT = flags.DEFINE_string("split", "test", "Split to evaluate.")
_WHICH = flags.DEFINE_enum("which", "best", ["best", "latest"], "Checkpoint to restore.")
_NUM = flags.DEFINE_integer("num_examples", -1, "Examples to evaluate (-1: all).")
_BATCH = flags.DEFINE_integer("batch_size", None, "Batch size (default: the config's).")
_OUT = flags.DEFINE_string("out", None, "Output folder (default: <workdir>/eval).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data_dir overriding the config's.")
_FIGS = flags.DEFINE_integer("num_figure_examples", 4, "Examples in the figures (0: none).")


def main(argv: list[str]) -> None:
    del argv
    result = evaluate_workdir(_WORKDIR.value, split=_SPLIT.value, which=_WHICH.value,
                              num_examples=_NUM.value, batch_size=_BATCH.value,
                              out_dir=_OUT.value, data_dir=_DATA_DIR.value,
                              num_figure_examples=_FIGS.value)
    keys = ("name", "split", "num_examples", "mean_epe_mm", "median_epe_mm", "auc_20_50",
            "auc_0_50", "constant_pose_baseline")
    print(json.dumps({k: result[k] for k in keys}, indent=2))
    print(f"wrote {', '.join(result['files'])} to "
          f"{_OUT.value or os.path.join(_WORKDIR.value, EVAL_DIR)}")


if __name__ == "__main__":
    app.run(main)
