r"""``make demo``: the whole mission on synthetic data, on a laptop CPU, in under 30 minutes.

    python -m experiments.demo --out results/demo

1. writes a synthetic hand data set in RHD's on-disk layout (``data_prep.synthetic``);
2. builds it with the RHD TFDS builder (``data_prep.build``, config ``synthetic``);
3. trains the demo config (``experiments/configs/demo.py``) with S1 (``R2P``, RGB → pose)
   and S4 (``RC2CHP_poe``, RGB + point cloud → pose, heat maps, cloud, product of experts);
4. evaluates both from RGB only by hand3d's protocol (``experiments.evaluate``);
5. writes ``<out>/report.md``: a Table-1-style comparison, the PCK plot of both and the
   paper-style figures (poses, Fig. 3 reconstructions, Figs. 1/4 interpolations).

Every step skips work whose outputs already exist, so a re-run resumes (training itself
resumes from its newest checkpoint). ``--force`` redoes everything. Layout under ``--out``::

    data/synthetic/rhd/   raw RHD-format data      data/tfds/   the built TFDS data set
    workdirs/S1_R2P/, workdirs/S4_RC2CHP_poe/      (config.json, checkpoints, eval/)
    report.md, pck.png, figures/, timings.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from handvae.evaluation import report

MODELS = (("S1", "R2P"), ("S4", "RC2CHP_poe"))
DONE_MARKER = ".demo_complete"
# Modules each step needs (written by other parts of the project).
NEEDS = {
    "generate": ("data_prep.synthetic",),
    "build": ("data_prep.build", "data_prep.rhd.rhd_dataset_builder"),
    "train": ("handvae.training.loop", "handvae.data.pipeline", "handvae.models.vae",
              "handvae.losses.objectives"),
    "evaluate": ("handvae.training.checkpoint", "handvae.data.pipeline", "handvae.models.vae"),
}


class StepFailed(RuntimeError):
    """A demo step failed; the message names the step and the command to rerun."""


def missing_modules(step: str) -> list[str]:
    """Modules of ``NEEDS[step]`` that cannot be imported (parts not landed yet)."""
    missing = []
    for name in NEEDS[step]:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except ModuleNotFoundError:
            missing.append(name)
    return missing


def _banner(index: int, total: int, text: str, start: float) -> None:
    print(f"\n[{index}/{total}] {text}  (t = {time.perf_counter() - start:5.0f} s)", flush=True)


def _run(cmd: Sequence[str], step: str) -> float:
    """Runs ``cmd`` with its output on this terminal; returns seconds; StepFailed on error."""
    print("  $ " + " ".join(cmd), flush=True)
    begin = time.perf_counter()
    result = subprocess.run(list(cmd), check=False)
    if result.returncode != 0:
        raise StepFailed(f"step {step!r} failed (exit {result.returncode}); rerun it alone "
                         f"with:\n  {' '.join(cmd)}")
    return time.perf_counter() - begin


def _marker_matches(folder: str, params: dict[str, Any]) -> bool:
    path = os.path.join(folder, DONE_MARKER)
    if not os.path.exists(path):
        return False
    with open(path) as f:
        return json.load(f) == params


def _write_marker(folder: str, params: dict[str, Any]) -> None:
    with open(os.path.join(folder, DONE_MARKER), "w") as f:
        json.dump(params, f)


def _earlier(out: str, key: str) -> Any:
    """A skipped step's time as measured by the run that did it (from timings.json)."""
    try:
        with open(os.path.join(out, "timings.json")) as f:
            value = json.load(f).get(key)
    except (OSError, ValueError):
        value = None
    if isinstance(value, (int, float)):
        return f"{value:.0f} s (earlier run)"
    return value if isinstance(value, str) and "earlier run" in value else "skipped (exists)"


def _trained(workdir: str, steps: int) -> bool:
    path = os.path.join(workdir, "final_metrics.json")
    if not os.path.exists(path):
        return False
    with open(path) as f:
        return int(json.load(f).get("step", -1)) >= steps


def _evaluated(workdir: str) -> bool:
    metrics = os.path.join(workdir, "eval", "metrics.json")
    final = os.path.join(workdir, "final_metrics.json")
    return (os.path.exists(metrics) and os.path.exists(final)
            and os.path.getmtime(metrics) >= os.path.getmtime(final))


def run_demo(out: str, *, num_train: int, num_eval: int, steps: int, seed: int = 0,
             force: bool = False, eval_examples: int = -1) -> dict[str, Any]:
    """Runs the five steps; returns ``{"results": {label: metrics}, "timings": {...}}``.

    Raises:
      StepFailed: a step failed or a part of the project it needs is missing.
    """
    start = time.perf_counter()
    out = os.path.abspath(out)
    raw = os.path.join(out, "data", "synthetic", "rhd")
    tfds_dir = os.path.join(out, "data", "tfds")
    timings: dict[str, Any] = {}
    total = 5
    py = sys.executable
    if force and os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out, exist_ok=True)

    def require(step: str) -> None:
        missing = missing_modules(step)
        if missing:
            raise StepFailed(f"step {step!r} needs {', '.join(missing)}, which this checkout "
                             "does not have yet (another part of the project); the steps "
                             "before it are done and a re-run resumes from here")

    # 1. Generate.
    data_params = {"num_train": num_train, "num_eval": num_eval, "seed": seed}
    _banner(1, total, f"synthetic RHD-format data: {num_train} train / {num_eval} eval "
                      f"frames → {raw}", start)
    if _marker_matches(raw, data_params):
        print("  exists, skipped")
        timings["generate_s"] = _earlier(out, "generate_s")
    else:
        require("generate")
        timings["generate_s"] = _run(
            [py, "-m", "data_prep.synthetic", "--format", "rhd", "--out", raw,
             "--num-train", str(num_train), "--num-eval", str(num_eval), "--seed", str(seed),
             "--overwrite"], "generate")
        _write_marker(raw, data_params)
        shutil.rmtree(tfds_dir, ignore_errors=True)  # new raw data: rebuild

    # 2. Build.
    _banner(2, total, f"TFDS build (rhd/synthetic, array_record) → {tfds_dir}", start)
    if _marker_matches(tfds_dir, data_params):
        print("  exists, skipped")
        timings["build_s"] = _earlier(out, "build_s")
    else:
        require("build")
        shutil.rmtree(tfds_dir, ignore_errors=True)
        timings["build_s"] = _run(
            [py, "-m", "data_prep.build", "--dataset", "rhd", "--config", "synthetic",
             "--manual_dir", raw, "--data_dir", tfds_dir], "build")
        _write_marker(tfds_dir, data_params)

    # 3. Train.
    workdirs = {}
    for label, strategy in MODELS:
        workdir = os.path.join(out, "workdirs", f"{label}_{strategy}")
        workdirs[label] = (strategy, workdir)
        _banner(3, total, f"train {label} ({strategy}), {steps} steps → {workdir}", start)
        if _trained(workdir, steps):
            print("  trained, skipped")
            timings[f"train_{label}_s"] = _earlier(out, f"train_{label}_s")
            continue
        require("train")
        timings[f"train_{label}_s"] = _run(
            [py, "-m", "experiments.train",
             "--config", f"experiments/configs/demo.py:strategy={strategy},steps={steps}",
             "--workdir", workdir, f"--config.data.data_dir={tfds_dir}",
             "--verbosity=-1"],  # absl: warnings only; the progress bar stays
            f"train {label}")

    # 4. Evaluate (in this process; the figures come with it).
    results = {}
    for label, (strategy, workdir) in workdirs.items():
        name = f"{label} ({strategy})"
        _banner(4, total, f"evaluate {name} from RGB only (test split)", start)
        metrics_path = os.path.join(workdir, "eval", "metrics.json")
        if _evaluated(workdir):
            print("  evaluated, skipped")
            timings[f"evaluate_{label}_s"] = _earlier(out, f"evaluate_{label}_s")
        else:
            require("evaluate")
            from experiments import evaluate
            begin = time.perf_counter()
            evaluate.evaluate_workdir(workdir, split="test", which="best",
                                      num_examples=eval_examples, data_dir=tfds_dir, name=name)
            timings[f"evaluate_{label}_s"] = time.perf_counter() - begin
        with open(metrics_path) as f:
            results[name] = json.load(f)
        print(f"  {name}: mean EPE {results[name]['mean_epe_mm']:.2f} mm, "
              f"AUC 20–50 {results[name]['auc_20_50']:.3f}")

    # 5. Report.
    _banner(5, total, f"report → {os.path.join(out, 'report.md')}", start)
    timings["total_this_run_s"] = time.perf_counter() - start
    info = {"num_train": num_train, "num_eval": num_eval, "steps": steps, "seed": seed,
            "cpu_count": os.cpu_count()}
    write_report(out, results, workdirs, timings, info)
    print(f"\ndone in {timings['total_this_run_s']:.0f} s; open {os.path.join(out, 'report.md')}")
    return {"results": results, "timings": timings}


# Quoted from Yang et al. (ICCV 2019) for orientation only: real RHD/STB, full-size model.
PAPER_REFERENCE = {
    "paper S4, RHD (real data)": {"mean_epe_mm": 13.14},
    "paper S4, STB (real data)": {"mean_epe_mm": 7.05},
}
FIGURES = (("poses.png", "Predicted (colour) over ground-truth (grey) poses, from RGB only"),
           ("reconstruction.png", "Fig. 3 style: point cloud decoded from z_rgb beside the "
                                  "ground-truth cloud and the RGB crop"),
           ("interpolation.png", "Figs. 1/4 style: poses (and clouds) decoded along the line "
                                 "between z_rgb of two test images"))


def _baseline_row(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    for result in results.values():
        if "constant_pose_baseline" in result:
            return {"constant guess (test mean pose)": result["constant_pose_baseline"]}
    return {}


def _fmt_seconds(value: Any) -> str:
    return f"{value:.0f} s" if isinstance(value, (int, float)) else str(value)


def write_report(out: str, results: dict[str, dict[str, Any]],
                 workdirs: dict[str, tuple[str, str]], timings: dict[str, Any],
                 info: dict[str, Any]) -> str:
    """Writes ``<out>/report.md``, ``pck.png``, ``figures/`` and ``timings.json``.

    Args:
      out: the demo's output folder.
      results: model name ("S1 (R2P)") → the evaluation's metrics.json dict.
      workdirs: label ("S1") → (strategy, workdir); figures are copied from
        ``<workdir>/eval``.
      timings: step → seconds (or "skipped (exists)").
      info: data/run sizes shown in the report.

    Returns:
      The path of report.md.
    """
    report.plot_pck(results, os.path.join(out, "pck.png"),
                    title="synthetic RHD-format test split: 3D PCK")
    fig_dir = os.path.join(out, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    figure_lines = []
    for label, (strategy, workdir) in workdirs.items():
        for filename, caption in FIGURES:
            src = os.path.join(workdir, "eval", filename)
            if not os.path.exists(src):
                continue
            dst = f"{label}_{strategy}_{filename}"
            shutil.copyfile(src, os.path.join(fig_dir, dst))
            figure_lines.append(f"**{label} ({strategy})**: {caption}\n\n"
                                f"![{label} {filename}](figures/{dst})\n")
    with open(os.path.join(out, "timings.json"), "w") as f:
        json.dump(timings, f, indent=2)
    timing_rows = "\n".join(f"| {k.removesuffix('_s')} | {_fmt_seconds(v)} |"
                             for k, v in timings.items())
    lines = [
        "# handvae demo: S1 (RGB → pose) vs S4 (RGB + point cloud, product of experts)\n",
        f"Synthetic RHD-format data: {info['num_train']} training / {info['num_eval']} test "
        f"frames (seed {info['seed']}); demo config (`experiments/configs/demo.py`), "
        f"{info['steps']} steps per model; {info['cpu_count']} CPU cores. Poses are "
        "predicted from the RGB crop alone and scored by hand3d's protocol (per keypoint "
        "over visible instances, then averaged; AUC over 20–50 mm).\n",
        "## Table 1 style comparison\n",
        report.comparison_table(results, reference=_baseline_row(results)),
        "The last row scores a constant guess, the test split's own mean pose, without "
        "looking at the image: a model has learned something from the RGB crop only where it "
        "beats that row.\n",
        "For orientation only, the paper's S4 on the real benchmarks (full-size model, far "
        "longer training, real images; not comparable with this toy run):\n",
        report.comparison_table({}, reference=PAPER_REFERENCE),
        "## 3D PCK\n",
        "![PCK](pck.png)\n",
        "## Figures\n",
        *figure_lines,
        "## Wall time\n",
        "| step | time |\n|---|---:|\n" + timing_rows + "\n",
        "Steps marked \"earlier run\" were done by a previous run and skipped by this one "
        "(the demo resumes); `total_this_run` counts only this run.\n",
    ]
    path = os.path.join(out, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.demo",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/demo", help="output folder")
    parser.add_argument("--num-train", type=int, default=2000, help="synthetic train frames")
    parser.add_argument("--num-eval", type=int, default=256, help="synthetic test frames")
    parser.add_argument("--steps", type=int, default=1500, help="training steps per model")
    parser.add_argument("--eval-examples", type=int, default=-1,
                        help="test examples to evaluate (-1: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="delete --out and redo all")
    args = parser.parse_args(argv)
    try:
        run_demo(args.out, num_train=args.num_train, num_eval=args.num_eval, steps=args.steps,
                 seed=args.seed, force=args.force, eval_examples=args.eval_examples)
    except StepFailed as error:
        print(f"\ndemo stopped: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
