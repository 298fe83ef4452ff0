"""Reports: Markdown tables in the style of the paper's Table 1 and PCK plots as its Figs. 5–7.

Inputs are the dicts of :func:`handvae.evaluation.metrics.summarize_errors`. Plots use
matplotlib's Agg backend (no display needed; :func:`handvae.evaluation.figures.plot_to`) and
are written as PNG.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from handvae.evaluation import figures, metrics  # figures chooses matplotlib's Agg backend
from handvae.ops import skeleton

_REQUIRED = ("mean_epe_mm", "median_epe_mm", "pck_thresholds_mm", "pck", "auc_20_50",
             "auc_0_50")


def _check_summary(name: str, summary: Mapping[str, Any]) -> None:
    missing = [k for k in _REQUIRED if k not in summary]
    if missing:
        raise ValueError(f"summary {name!r} lacks {missing}; pass the dict returned by "
                         "handvae.evaluation.metrics.summarize_errors")


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def comparison_table(summaries: Mapping[str, Mapping[str, Any]],
                     reference: Mapping[str, Mapping[str, float]] | None = None) -> str:
    """Table-1-style Markdown comparison of several evaluated models.

    Args:
      summaries: name → summary dict (from ``summarize_errors``), one row each.
      reference: optional name → {"mean_epe_mm": ..., "auc_20_50": ...} rows quoted from a
        paper; missing fields print as "–".

    Returns:
      A Markdown table with mean/median EPE (mm), AUC 20–50 mm and AUC 0–50 mm.
    """
    lines = ["| model | mean EPE (mm) | median EPE (mm) | AUC 20–50 mm | AUC 0–50 mm | N |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, s in summaries.items():
        _check_summary(name, s)
        lines.append(f"| {name} | {_fmt(s['mean_epe_mm'], 2)} | {_fmt(s['median_epe_mm'], 2)}"
                     f" | {_fmt(s['auc_20_50'], 3)} | {_fmt(s['auc_0_50'], 3)}"
                     f" | {s.get('num_examples', '–')} |")
    for name, r in (reference or {}).items():
        lines.append(f"| {name} | {_fmt(r.get('mean_epe_mm'), 2)} | "
                     f"{_fmt(r.get('median_epe_mm'), 2)} | {_fmt(r.get('auc_20_50'), 3)} | "
                     f"{_fmt(r.get('auc_0_50'), 3)} | – |")
    return "\n".join(lines) + "\n"


def per_joint_table(summary: Mapping[str, Any]) -> str:
    """Markdown table of each joint's mean and median error (mm) and visible count."""
    _check_summary("summary", summary)
    means = summary.get("per_joint_mean_mm")
    medians = summary.get("per_joint_median_mm")
    counts = summary.get("num_visible")
    if means is None or len(means) != skeleton.NUM_JOINTS:
        raise ValueError("summary must hold per_joint_mean_mm with 21 entries")
    lines = ["| joint | name | mean (mm) | median (mm) | visible |", "|---:|---|---:|---:|---:|"]
    for j, name in enumerate(skeleton.JOINT_NAMES):
        med = medians[j] if medians is not None else None
        cnt = counts[j] if counts is not None else "–"
        lines.append(f"| {j} | {name} | {_fmt(means[j], 2)} | {_fmt(med, 2)} | {cnt} |")
    return "\n".join(lines) + "\n"


def metrics_markdown(summary: Mapping[str, Any], title: str = "Evaluation",
                     origin: Mapping[str, Any] | None = None) -> str:
    """A self-contained Markdown page: headline figures, PCK values and per-joint errors.

    Args:
      summary: ``summarize_errors`` (or ``summarize_visible_and_all``) dict; its
        ``all_keypoints`` and ``constant_pose_baseline`` are listed when present.
      title: page title.
      origin: ``handvae.evaluation.evaluator.provenance`` of the numbers (data set, split,
        size, checkpoint), printed under the title.
    """
    _check_summary("summary", summary)
    thresholds = summary["pck_thresholds_mm"]
    pck = summary["pck"]
    head = " | ".join(f"{t:.1f}" for t in thresholds)
    vals = " | ".join(f"{p:.3f}" for p in pck)
    source = ""
    if origin:
        step = origin.get("checkpoint_step")
        selected = (f", chosen on the {origin['selection_split']!r} split"
                    if origin.get("selection_split") and origin.get("which") == "best" else "")
        source = (f"Data: {origin['dataset']} split {origin['split']!r}, "
                  f"{origin['num_examples']} examples. Checkpoint: {origin['checkpoint']}"
                  f"{selected} (step {step}).\n\n")
    extra = ""
    every = summary.get("all_keypoints")
    if every:
        extra += ("\nOver all 21 keypoints (visibility ignored): mean EPE "
                  f"{_fmt(every['mean_epe_mm'], 2)} mm, median {_fmt(every['median_epe_mm'], 2)}"
                  f" mm, AUC 20–50 {_fmt(every['auc_20_50'], 3)}, AUC 0–50 "
                  f"{_fmt(every['auc_0_50'], 3)}. The table above counts visible keypoints "
                  "only (hand3d's rule); that is the figure compared with the paper.\n")
    base = summary.get("constant_pose_baseline")
    if base:
        extra += ("\nConstant guess (the split's mean pose, no image): mean EPE "
                  f"{_fmt(base['mean_epe_mm'], 2)} mm, AUC 20–50 {_fmt(base['auc_20_50'], 3)}.\n")
    return (f"# {title}\n\n" + source +
            "Protocol: hand3d's `EvalUtil` (per keypoint over visible instances, then "
            "averaged over keypoints; thresholds `linspace(0, 50, 20)` mm; AUC 20–50 over "
            "the grid's points 8–19).\n\n"
            + comparison_table({title: summary}) + extra
            + "\n## 3-D PCK\n\n"
            f"| threshold (mm) | {head} |\n|---|{'---:|' * len(thresholds)}\n"
            f"| PCK | {vals} |\n"
            "\n## Per joint\n\n" + per_joint_table(summary))


def write_json(path: str | os.PathLike, payload: Mapping[str, Any]) -> None:
    """Writes ``payload`` as indented JSON (NaN written as null), creating parent folders."""
    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, Mapping):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if isinstance(x, np.generic):
            return clean(x.item())
        return x
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(clean(dict(payload)), f, indent=2)
        f.write("\n")


def plot_pck(summaries: Mapping[str, Mapping[str, Any]], path: str | os.PathLike, *,
             title: str = "3D PCK", threshold_range_mm: tuple[float, float] = (20.0, 50.0),
             reference_curves: Sequence[tuple[Sequence[float], Sequence[float], str]] = ()
             ) -> None:
    """PCK curves in the style of the paper's Figs. 5–7, one line per model, saved as PNG.

    Args:
      summaries: name → summary dict; each curve is labelled "name (AUC=…)" with the AUC of
        the plotted range (``auc_20_50`` for the default 20–50 mm).
      path: output PNG path.
      title: axes title (e.g. the data set).
      threshold_range_mm: plotted thresholds (inclusive) among the summary's grid.
      reference_curves: extra (thresholds_mm, pck, label) curves, e.g. quoted from a paper.
    """
    lo, hi = threshold_range_mm
    with figures.plot_to(path, figsize=(5.0, 4.0)) as ax:
        markers = "os^Dv<>p"
        for i, (name, s) in enumerate(summaries.items()):
            _check_summary(name, s)
            t = np.asarray(s["pck_thresholds_mm"], dtype=float)
            p = np.asarray(s["pck"], dtype=float)
            # hand3d plots grid points inside the range (20–50: indices 8…19).
            keep = (t >= lo - 1e-9) & (t <= hi + 1e-9)
            if keep.sum() < 2:
                raise ValueError(f"threshold_range_mm {threshold_range_mm} keeps fewer than 2 of "
                                 f"the grid's thresholds {t.tolist()}")
            area = metrics.auc(t[keep], p[keep])
            ax.plot(t[keep], p[keep], marker=markers[i % len(markers)], markersize=4,
                    label=f"{name} (AUC={area:.3f})")
        for t, p, label in reference_curves:
            ax.plot(t, p, linestyle="--", label=label)
        ax.set_xlabel("Error threshold (mm)")
        ax.set_ylabel("3D PCK")
        ax.set_xlim(lo, hi)
        ax.set_ylim(0.0, 1.0)
        ax.grid(True, alpha=0.3)
        ax.set_title(title)
        ax.legend(loc="lower right", fontsize=8)
