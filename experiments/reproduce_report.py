"""The reproduction's report: ``table1.md``, ``fig5.png``, ``fig8.png``, ``validation.png``,
``results.json``.

Pure bookkeeping over the run records that :mod:`experiments.reproduce` gets from the launcher
(``experiments/launcher.py``; of those, this module imports only ``launcher_records``): runs
that differ only by their seed form one setting, summarised as mean ± sample std over seeds
(``ddof=1``; a single seed has no spread and says so), with the seed count beside it. A
difference between two settings is given with Welch's t-test p-value (two-sided, unequal
variances; scipy), which needs at least two seeds on each side. ``validation.png`` draws every
run's validation curve (mean EPE at each evaluation, the selected step marked): the evidence for
the checkpoint each run chose, and for whether its schedule had converged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from experiments.configs.reproduce import FIG8_SHARES
from experiments.launcher_records import read_test_metrics  # noqa: F401 (the runs' test)

# Yang et al. (ICCV 2019), Table 1: mean EPE (mm) on real RHD.
PAPER_TABLE1_RHD = {"R2P": 16.61, "R2HP": 16.10, "R2CP": 15.91, "R2CHP": 15.49,
                    "RC2CHP_kl": 14.93, "RC2CHP_poe": 13.14}
PAPER_LABELS = {"R2P": "S1", "R2HP": "S2", "R2CP": "S2", "R2CHP": "S2", "RC2CHP_kl": "S3",
                "RC2CHP_poe": "S4"}
METRICS = (("mean_epe_mm", "mean EPE (mm)", 2), ("median_epe_mm", "median EPE (mm)", 2),
           ("auc_20_50", "AUC 20–50 mm", 3))


def setting_of(record: Mapping[str, Any]) -> dict[str, str]:
    """The run's config argument as a dict, without its seed and scale."""
    items = dict(part.split("=", 1) for part in record["config_arg"].split(",") if part)
    items.pop("seed", None)
    items.pop("scale", None)
    return items


def _key(setting: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(setting.items()))


def group_by_setting(records: Sequence[Mapping[str, Any]]
                     ) -> dict[tuple[tuple[str, str], ...], list[Mapping[str, Any]]]:
    """Records grouped by setting (everything but the seed)."""
    groups: dict[tuple[tuple[str, str], ...], list[Mapping[str, Any]]] = {}
    for record in records:
        groups.setdefault(_key(setting_of(record)), []).append(record)
    return groups


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and std over seeds of each metric, the mean PCK curve and the seed count."""
    out: dict[str, Any] = {"num_seeds": len(records),
                           "seeds": sorted(int(r.get("seed", -1)) for r in records)}
    for name, _, _ in METRICS:
        values = np.array([r["test"][name] for r in records], np.float64)
        out[name] = float(values.mean())
        # sample std (ddof = 1); one seed has no spread (None, shown as "1 seed")
        out[name + "_std"] = float(values.std(ddof=1)) if len(values) > 1 else None
        out[name + "_per_seed"] = values.tolist()
    out["pck_thresholds_mm"] = records[0]["test"]["pck_thresholds_mm"]
    out["pck"] = np.mean([r["test"]["pck"] for r in records], axis=0).tolist()
    out["checkpoint"] = [r["test"].get("checkpoint") for r in records]
    # the step the trainer tested (the best by validation), from the test record's provenance
    out["selected_step_per_seed"] = [r["test"].get("checkpoint_step") for r in records]
    curves = [r.get("validation") for r in records]
    if all(c and c.get("best_step") is not None for c in curves):
        out["validation_best_mean_epe_mm_per_seed"] = [c["best_mean_epe_mm"] for c in curves]
        out["validation_best_mean_epe_mm"] = float(np.mean(
            out["validation_best_mean_epe_mm_per_seed"]))
    return out


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's t-test (unequal variances) between two seed samples;
    None when either side has fewer than two seeds or both have zero spread."""
    from scipy import stats
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2 or (a.std() == 0 and b.std() == 0):
        return None
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def _p_text(p: float | None) -> str:
    return "–" if p is None else (f"{p:.3f}" if p >= 1e-3 else f"{p:.1e}")


def table1_rows(groups, extra: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Strategy → summary for the Table-1 settings (view-corrected, fully supervised), with
    ``extra`` the ablation arguments every run shares (``reproduce --extra``)."""
    rows = {}
    for strategy in PAPER_TABLE1_RHD:
        records = groups.get(_key({"strategy": strategy, **(extra or {})}))
        if records:
            rows[strategy] = summarize(records)
    if "R2P" in rows:   # every strategy against S1, Welch's t over seeds
        for row in rows.values():
            row["p_vs_S1"] = welch_p(row["mean_epe_mm_per_seed"],
                                     rows["R2P"]["mean_epe_mm_per_seed"])
    return rows


def table1_markdown(rows: Mapping[str, Mapping[str, Any]], baseline: Mapping[str, Any] | None
                    ) -> str:
    """Table 1 as Markdown: mean ± std over seeds beside the paper's RHD column."""
    lines = ["| strategy | paper | " + " | ".join(label for _, label, _ in METRICS)
             + " | p vs S1 (Welch) | validation mean EPE (mm) | selected step | seeds "
             "| paper mean EPE, real RHD (mm) |",
             "|---|---|" + "---:|" * (len(METRICS) + 5)]
    for strategy, row in rows.items():
        cells = [f"{row[name]:.{digits}f} ± {row[name + '_std']:.{digits}f}"
                 if row["num_seeds"] > 1 else f"{row[name]:.{digits}f} (1 seed)"
                 for name, _, digits in METRICS]
        validation = row.get("validation_best_mean_epe_mm")
        steps = [s for s in row.get("selected_step_per_seed", []) if s is not None]
        cells += ["–" if strategy == "R2P" else _p_text(row.get("p_vs_S1")),
                  "–" if validation is None else f"{validation:.2f}",
                  "–" if not steps else ", ".join(str(s) for s in steps)]
        lines.append(f"| `{strategy}` | {PAPER_LABELS[strategy]} | " + " | ".join(cells)
                     + f" | {row['num_seeds']} | {PAPER_TABLE1_RHD[strategy]:.2f} |")
    if baseline:
        cells = [f"{baseline[name]:.{digits}f}" if name in baseline else "–"
                 for name, _, digits in METRICS]
        lines.append("| constant guess (test mean pose) | – | " + " | ".join(cells)
                     + " | – | – | – | – | – |")
    lines += ["", "± is the sample standard deviation over seeds (ddof = 1); p is Welch's "
              "two-sided t-test of the per-seed test mean EPEs against S1's."]
    if "R2P" in rows and "RC2CHP_poe" in rows:
        s1, s4 = rows["R2P"], rows["RC2CHP_poe"]
        ratio = s4["mean_epe_mm"] / s1["mean_epe_mm"]
        gap = s1["mean_epe_mm"] - s4["mean_epe_mm"]
        p = s4.get("p_vs_S1")
        verdict = ("no p-value (a strategy has a single seed)" if p is None
                   else f"Welch's p = {_p_text(p)}")
        lines += ["", (f"S4/S1 mean-EPE ratio: {ratio:.3f} (paper: {13.14 / 16.61:.3f}); "
                       f"S1 − S4 = {gap:.2f} mm, {verdict}.")]
    return "\n".join(lines) + "\n"


def fig8_series(groups, shares: Sequence[float], extra: Mapping[str, str] | None = None
                ) -> dict[str, list[dict[str, Any] | None]]:
    """Supervised (first m % only) and weakly supervised (rest unlabelled) S4 over ``shares``,
    and ``p_weak_vs_supervised`` per share (Welch's t over seeds; None below two seeds)."""
    series: dict[str, list[Any]] = {"supervised": [], "weakly supervised": [],
                                    "p_weak_vs_supervised": []}
    extra = dict(extra or {})
    full = groups.get(_key({"strategy": "RC2CHP_poe", **extra}))
    for share in shares:
        for label, field in (("supervised", "train_fraction"), ("weakly supervised", "labelled")):
            records = full if share == 1.0 else groups.get(
                _key({"strategy": "RC2CHP_poe", field: str(share), **extra}))
            series[label].append(summarize(records) if records else None)
        sup, weak = series["supervised"][-1], series["weakly supervised"][-1]
        series["p_weak_vs_supervised"].append(
            welch_p(weak["mean_epe_mm_per_seed"], sup["mean_epe_mm_per_seed"])
            if sup and weak and share != 1.0 else None)
    return series


def plot_fig5(curves: Mapping[str, Mapping[str, Any]], path: str) -> None:
    """3-D PCK curves (mean over seeds), AUC 20–50 in the legend."""
    from handvae.evaluation import figures
    with figures.plot_to(path) as ax:
        for label, summary in curves.items():
            ax.plot(summary["pck_thresholds_mm"], summary["pck"],
                    label=f"{label} (AUC {summary['auc_20_50']:.3f})")
        ax.set(xlabel="error threshold (mm)", ylabel="3D PCK", xlim=(20, 50), ylim=(0, 1),
               title="Fig. 5 on the synthetic benchmark (test split)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")


def plot_fig8(shares: Sequence[float], series: Mapping[str, Sequence[Any]], path: str) -> None:
    """Mean EPE (± std over seeds) against the labelled share m."""
    from handvae.evaluation import figures
    with figures.plot_to(path) as ax:
        for label in ("supervised", "weakly supervised"):
            points = series[label]
            xs = [100 * s for s, p in zip(shares, points) if p]
            ys = [p["mean_epe_mm"] for p in points if p]
            es = [p["mean_epe_mm_std"] or 0.0 for p in points if p]
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=f"S4 {label}")
        ax.set(xlabel="labelled share m (%)", ylabel="mean EPE (mm)", xscale="log",
               title="Fig. 8 on the synthetic benchmark (test split)")
        ax.set_xticks([100 * s for s in shares], [f"{100 * s:g}" for s in shares])
        ax.grid(alpha=0.3)
        ax.legend()


def plot_validation(curves: Mapping[str, Mapping[str, Any]], path: str) -> None:
    """Each run's validation mean EPE against the step, its selected (best) step marked.

    Args:
      curves: run name → its record's ``validation`` (``steps``, ``mean_epe_mm``, ``best_step``).
      path: the PNG to write.
    """
    from handvae.evaluation import figures
    with figures.plot_to(path, figsize=(7, 4.5)) as ax:
        for name, curve in sorted(curves.items()):
            steps, epe = curve["steps"], curve["mean_epe_mm"]
            (line,) = ax.plot(steps, epe, marker=".", label=name)
            if curve.get("best_step") in steps:
                best = steps.index(curve["best_step"])
                ax.plot(steps[best], epe[best], "o", mfc="none", ms=9, color=line.get_color())
        ax.set(xlabel="step", ylabel="validation mean EPE (mm)",
               title="Validation curves (circle: the checkpoint each run selected)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)


def write_all(root: str, payload: dict[str, Any]) -> list[str]:
    """Writes every report file the payload's targets call for, then ``results.json``;
    returns the names written (files of an earlier report that this one did not rewrite are
    not among them)."""
    written = []
    groups = group_by_setting(payload["runs"])
    extra = payload.get("extra") or {}
    rows = table1_rows(groups, extra)
    baseline = next((r["test"].get("constant_pose_baseline") for r in payload["runs"]
                     if r["test"].get("constant_pose_baseline")), None)
    payload["table1"] = rows
    if rows:
        header = (f"# Table 1 on the synthetic benchmark ({payload['scale']} scale)\n\n"
                  f"Test split, best checkpoint by validation mean EPE; mean ± sample std over the "
                  f"seeds that finished (planned: {payload['seeds']}; {len(payload['runs'])} "
                  f"of {payload.get('planned_runs', len(payload['runs']))} planned runs "
                  f"finished); commit {payload['commit']}"
                  + (f"; ablation arguments {extra}" if extra else "") + ".\n\n")
        with open(os.path.join(root, "table1.md"), "w") as f:
            f.write(header + table1_markdown(rows, baseline))
        written.append("table1.md")
    if "fig5" in payload["targets"]:
        curves = {f"{PAPER_LABELS[s]} {s}": row for s, row in rows.items()}
        plain = groups.get(_key({"strategy": "R2P", "view_correction": "0", **extra}))
        if plain:
            curves["S1 R2P, no view correction"] = payload["fig5_no_vc"] = summarize(plain)
        if curves:
            plot_fig5(curves, os.path.join(root, "fig5.png"))
            written.append("fig5.png")
    if "fig8" in payload["targets"]:
        shares = sorted(set(payload.get("shares") or FIG8_SHARES) | {1.0})
        series = fig8_series(groups, shares, extra)
        payload["fig8"] = {"shares": shares, **series}
        if any(series["supervised"] + series["weakly supervised"]):
            plot_fig8(shares, series, os.path.join(root, "fig8.png"))
            written.append("fig8.png")
    curves = {r.get("name") or r["config_arg"]: r["validation"] for r in payload["runs"]
              if r.get("validation")}
    if curves:
        plot_validation(curves, os.path.join(root, "validation.png"))
        written.append("validation.png")
    with open(os.path.join(root, "results.json"), "w") as f:
        json.dump(payload, f, indent=1)
    return written + ["results.json"]
