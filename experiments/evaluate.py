r"""Evaluates a trained work directory from RGB only, by hand3d's protocol.

Usage::

    python -m experiments.evaluate --workdir workdirs/s4_rhd [--split test] [--which best]

Restores the best checkpoint (lowest mean EPE on ``config.data.validation_split``; ``--which
latest`` for the newest), predicts every pose of the split from the RGB crop alone with the
trainer's own evaluator (``handvae.evaluation.evaluator``, the same jitted step and device
layout), restores the known root and scale (``handvae/data/spec.py``) and writes, under
``<workdir>/eval/<split>_<which>/`` (:func:`report_dir`; or ``--out``), so that evaluating
another split or checkpoint never overwrites a report:

=========================== ==============================================================
``metrics.json``            ``summarize_visible_and_all`` (mean/median EPE mm over visible
                            keypoints — hand3d's rule, compared with the paper — and over
                            all 21, per-joint errors, PCK curve, AUC 20–50 and 0–50), the
                            constant-pose baseline, and where it comes from: ``dataset``,
                            ``split``, ``num_examples``, ``which``/``checkpoint`` and
                            ``checkpoint_step``
``metrics.md``              the same as Markdown tables
``pck.png``                 3-D PCK over 20–50 mm, as the paper's Figs. 5–7
``poses.png``               predicted (colour) over ground-truth (grey) poses
``reconstruction.png``      Fig. 3: clouds decoded from z_rgb beside the ground-truth cloud
                            and the RGB crop (strategies with a cloud decoder)
``interpolation.png``       Figs. 1/4: poses (and clouds) decoded along z_rgb(a) → z_rgb(b)
=========================== ==============================================================

Evaluating the test split (``config.data.eval_split``) fails when it holds fewer frames than
the data set defines (:func:`check_test_frames`): published numbers are over every frame.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from absl import app, flags

EVAL_DIR = "eval"
METRICS_FILE = "metrics.json"
# Test frames the data sets define (published numbers are over all of them): RHD's evaluation
# set, and STB's B1Counting + B1Random (SK camera) as used by Zimmermann & Brox.
DEFINED_TEST_FRAMES = {"rhd": 2728, "stb": 3000}


def report_dir(workdir: str, split: str = "test", which: str = "best",
               num_examples: int = -1) -> str:
    """``<workdir>/eval/<split>_<which>``: where the report of that split and checkpoint goes.

    An evaluation of only the first ``num_examples`` goes to ``<split>_<which>_first<N>``, so
    it never replaces a full-split report (which the demo and reproduce read).
    """
    suffix = f"_first{num_examples}" if num_examples >= 0 else ""
    return os.path.join(workdir, EVAL_DIR, f"{split}_{which}{suffix}")


def defined_frames(data_config: Any, split: str) -> int | None:
    """Frames the data set defines for ``split``: its build's record
    (``handvae.data.source.split_counts``), else RHD's 2,728 / STB's 3,000 for the test split;
    None when unknown (no check)."""
    from handvae.data import source
    try:
        return source.split_counts(data_config, split)[0]
    except (FileNotFoundError, KeyError):  # built without a record, or no such split in it
        pass
    if split == data_config.get("eval_split", "test"):
        return DEFINED_TEST_FRAMES.get(data_config.dataset)
    return None


def check_test_frames(data_config: Any, split: str, stored: int) -> None:
    """Refuses to report a test split that lost frames.

    Args:
      data_config: ``config.data``; only its test split (``eval_split``) is checked.
      split: the split to evaluate.
      stored: frames the built split holds.

    Raises:
      ValueError: the split holds fewer frames than :func:`defined_frames`.
    """
    if split != data_config.get("eval_split", "test"):
        return
    defined = defined_frames(data_config, split)
    if defined is not None and stored < defined:
        raise ValueError(
            f"the {data_config.dataset} {split!r} split holds {stored} frames but the data set "
            f"defines {defined}: published numbers are over every test frame, so this one "
            "cannot be reported. Rebuild it with the current builder (test frames are never "
            "skipped): python -m data_prep.build --dataset ... --overwrite")


def evaluate_workdir(workdir: str, *, split: str = "test", which: str = "best",
                     num_examples: int = -1, batch_size: int | None = None,
                     out_dir: str | None = None, data_dir: str | None = None,
                     num_figure_examples: int = 4, make_figures: bool = True,
                     name: str | None = None) -> dict[str, Any]:
    """Evaluates a work directory's checkpoint on a split and writes the report files.

    Args:
      workdir: a training work directory (``<workdir>/config.json`` and checkpoints).
      split: data split to evaluate (TFDS split name of the config's data set).
      which: "best" (lowest validation EPE) or "latest" checkpoint; "best" falls back to
        "latest" for a run that never evaluated (the report then says "latest").
      num_examples: how many examples of the split; -1 for all.
      batch_size: evaluation batch size; default the config's.
      out_dir: where to write; default :func:`report_dir` ``(workdir, split, which)``.
      data_dir: TFDS data_dir overriding the config's ``data.data_dir``.
      num_figure_examples: examples shown in the qualitative figures (0: none).
      make_figures: write poses/reconstruction/interpolation figures.
      name: label of the model in tables and plots; default the strategy name.

    Returns:
      The dict written to ``metrics.json``: the evaluator's summary, its provenance
      (``dataset``, ``split``, ``num_examples``, ``which``, ``checkpoint``,
      ``checkpoint_step``: the checkpoint really read, after any fall back;
      ``selection_split``), ``requested_examples`` (the ``num_examples`` asked for),
      ``full_split`` (whether every example of the split was evaluated) and ``workdir``,
      ``name``, ``strategy``, ``seconds``, ``files``.

    Raises:
      FileNotFoundError: not a work directory, or no checkpoint.
      ValueError: the test split holds fewer frames than the data set defines.
    """
    import jax

    from handvae.data import pipeline, source
    from handvae.models import registry
    from handvae.evaluation import evaluator, figures, report
    from handvae.training import checkpoint, sharding, step

    start = time.perf_counter()
    config = checkpoint.read_config(workdir)
    if data_dir:
        config.data.data_dir = data_dir
    split_size = len(source.load_source(config.data, split))
    check_test_frames(config.data, split, split_size)
    # ``origin`` names the checkpoint really read: "best" falls back to "latest" for a run
    # that never evaluated or whose best checkpoint is unreadable, and to older steps.
    config, model, variables, read = checkpoint.restore_with_origin(workdir, which=which)
    which = read["which"]
    if data_dir:
        config.data.data_dir = data_dir
    out_dir = out_dir or report_dir(workdir, split, which, num_examples)
    os.makedirs(out_dir, exist_ok=True)
    name = name or config.model.strategy

    # The trainer's evaluation: its jitted step, on all local devices, through the evaluator.
    mesh = sharding.make_mesh(jax.local_devices())
    eval_step = step.make_eval_step(model, mesh)
    variables = sharding.replicate(variables, mesh)
    data = sharding.batch_sharded(mesh)
    batches = pipeline.eval_batches(
        config.data, batch_size or config.batch_size, split=split, num_examples=num_examples,
        keys=registry.get_strategy(config.model.strategy).batch_keys(evaluation=True))
    result = evaluator.evaluate(
        lambda rgb: jax.device_get(eval_step(variables, jax.device_put(rgb, data))), batches,
        num_devices=mesh.devices.size, num_kept=num_figure_examples if make_figures else 0,
        desc=f"evaluate {name} ({split}, {which})")
    origin = evaluator.provenance(
        dataset=config.data.dataset, split=split, num_examples=result.summary["num_examples"],
        which=which, checkpoint_step=read["checkpoint_step"],
        selection_split=config.data.get("validation_split"))

    files = [os.path.join(out_dir, f) for f in (METRICS_FILE, "metrics.md", "pck.png")]
    report.plot_pck({name: result.summary}, files[2],
                    title=f"{config.data.dataset} {split}: 3D PCK")
    if make_figures and result.examples:
        files += figures.write_model_figures(model, variables, result.examples, out_dir,
                                             name=name)
    payload = {**result.summary, **origin, "requested_examples": int(num_examples),
               "full_split": int(result.summary["num_examples"]) >= split_size,
               "workdir": os.path.abspath(workdir), "name": name,
               "strategy": config.model.strategy, "seconds": time.perf_counter() - start,
               "files": [os.path.relpath(f, out_dir) for f in files]}
    with open(files[1], "w") as f:
        f.write(report.metrics_markdown(result.summary, origin=origin,
                                        title=f"{name} on {config.data.dataset} {split}"))
    report.write_json(files[0], payload)
    return payload


_WORKDIR = flags.DEFINE_string("workdir", None, "Training work directory.", required=True)
_SPLIT = flags.DEFINE_string("split", "test", "Split to evaluate.")
_WHICH = flags.DEFINE_enum("which", "best", ["best", "latest"], "Checkpoint to restore.")
_NUM = flags.DEFINE_integer("num_examples", -1, "Examples to evaluate (-1: all).")
_BATCH = flags.DEFINE_integer("batch_size", None, "Batch size (default: the config's).")
_OUT = flags.DEFINE_string("out", None,
                           "Output folder (default: <workdir>/eval/<split>_<which>, "
                           "<split>_<which>_first<N> with --num_examples N).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data_dir overriding the config's.")
_FIGS = flags.DEFINE_integer("num_figure_examples", 4, "Examples in the figures (0: none).")


def main(argv: list[str]) -> None:
    del argv
    from handvae.training.checkpoint import CheckpointReadError
    try:
        result = evaluate_workdir(_WORKDIR.value, split=_SPLIT.value, which=_WHICH.value,
                                  num_examples=_NUM.value, batch_size=_BATCH.value,
                                  out_dir=_OUT.value, data_dir=_DATA_DIR.value,
                                  num_figure_examples=_FIGS.value)
    except (ValueError, OSError, CheckpointReadError) as error:
        print(f"experiments.evaluate: {error}", file=sys.stderr)
        sys.exit(2)
    keys = ("name", "dataset", "split", "num_examples", "checkpoint", "checkpoint_step",
            "mean_epe_mm", "median_epe_mm", "auc_20_50", "auc_0_50", "mean_epe_all_mm",
            "constant_pose_baseline")
    print(json.dumps({k: result[k] for k in keys}, indent=2))
    out = _OUT.value or report_dir(_WORKDIR.value, result["split"], result["which"], _NUM.value)
    print(f"wrote {', '.join(result['files'])} to {out}")


if __name__ == "__main__":
    app.run(main)
