r"""``make demo``: the whole mission on synthetic data, on a laptop CPU, in about 15 minutes.

    python -m experiments.demo --out results/demo

A preset of the launcher (``experiments/launcher.py``): 1. generates a synthetic hand data
set in RHD's on-disk layout; 2. builds it with the RHD TFDS builder; 3. trains the demo config
(``experiments/configs/demo.py``) with S1 (``R2P``, RGB → pose) and S4 (``RC2CHP_poe``, RGB +
point cloud → pose, heat maps, cloud, product of experts); 4. evaluates both from RGB only by
hand3d's protocol; 5. writes ``<out>/report.md``: a Table-1-style comparison, the PCK plot,
the paper-style figures (poses, Fig. 3 clouds, Figs. 1/4 interpolations) and the committed
benchmark results (``experiments/results/cpu``: the demo config is its scale, run shorter).

Each step records its inputs in ``<out>/steps.json`` and is skipped when they are unchanged;
a step whose inputs changed is redone with every step after it (more ``--steps`` resume from
the newest checkpoint). Arguments are checked before anything is written. ``--force`` deletes
only the demo's own entries of ``--out`` (a folder marked ``.handvae-demo``) and names the
others it keeps (e.g. ``predict/``). A SIGTERM stops the step's child process too. Layout::

    data/synthetic/rhd/   raw RHD-format data      data/tfds/   the built TFDS data set
    workdirs/S1_R2P/, workdirs/S4_RC2CHP_poe/  (config.json, checkpoints, eval/test_best/)
    report.md, pck.png, figures/, timings.json, steps.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from typing import Any

from experiments import (launcher, launcher_data, launcher_evaluation, launcher_folders,
                         launcher_records)
from experiments.configs import demo as demo_config
from experiments.configs import reproduce as reproduce_config
from experiments.launcher import StepFailed
from experiments.launcher_evaluation import eval_dir, read_evaluation  # noqa: F401 (API)
from handvae.evaluation import report

MODELS = (("S1", "R2P"), ("S4", "RC2CHP_poe"))
PROJECT_ROOT = launcher.REPO
DEMO_CONFIG = os.path.join(PROJECT_ROOT, "experiments", "configs", "demo.py")
# The reproduction's committed cpu-scale results (the demo config is that scale, run shorter).
BENCHMARK_RESULTS = os.path.join(PROJECT_ROOT, "experiments", "results", "cpu", "results.json")
DEMO_MARKER = ".handvae-demo"  # marks --out as a demo folder (only such folders are deleted)
STEPS_FILE = launcher_records.STEPS_FILE
FOLDER = launcher_folders.OutputFolder(DEMO_MARKER, frozenset(
    {"data", "workdirs", "report.md", "pck.png", "figures", "timings.json", STEPS_FILE,
     DEMO_MARKER}), owner="the demo", command="python -m experiments.demo")
NUM_TRAIN = 3000  # generated training frames (5 % of them become the validation split)
DemoArgumentError = launcher_folders.ArgumentError
_run = launcher.call  # the one runner of child steps (kept for callers of the old name)
prepare_out = FOLDER.prepare  # (out, force): a marked folder; force deletes only the demo's


def plan(out: str, steps: int, tiny: bool = False) -> list[launcher.RunSpec]:
    """The demo's two runs (S1, S4) of the demo config (``tiny``: its smoke sizes)."""
    digest, size = launcher_records.file_digest(DEMO_CONFIG), ",tiny" if tiny else ""
    return [launcher.RunSpec(
        name=f"{label} ({strategy})", label=label, steps=steps,
        workdir=os.path.join(out, "workdirs", f"{label}_{strategy}"),
        config=f"{DEMO_CONFIG}:strategy={strategy}{size},steps={steps}",
        inputs={"strategy": strategy, "config": digest, **({"tiny": True} if tiny else {})},
        flags=("--verbosity=-1",))  # absl: warnings only; the progress bar stays
        for label, strategy in MODELS]


def run_demo(out: str, *, num_train: int, num_eval: int, steps: int, seed: int = 0,
             force: bool = False, eval_examples: int = -1, tiny: bool = False
             ) -> dict[str, Any]:
    """Runs the five steps; returns ``{"results": {name: metrics}, "timings": {...}}``.
    ``tiny``: the demo config's smoke sizes (32-px crops; the whole pipeline in minutes).

    Raises:
      DemoArgumentError: a bad argument, too many frames for the free disk or memory, or an
        ``out`` the demo may not use (checked before anything is written or deleted).
      StepFailed: a step failed or a part of the project it needs is missing.
    """
    for flag, value, low in (("--num-train", num_train, 1), ("--num-eval", num_eval, 1),
                             ("--steps", steps, 1), ("--seed", seed, 0)):
        launcher_folders.check_integer(flag, value, low)
    launcher_folders.check_integer("--eval-examples", eval_examples, 1, also=(-1,))
    out = os.path.abspath(out)
    launcher_folders.check_size(out, num_train + num_eval)
    start, timings = time.perf_counter(), {}
    progress = launcher.stage_printer(start)
    prepare_out(out, force)
    ledger = launcher_records.Ledger(out)
    raw, tfds_dir = os.path.join(out, "data", "synthetic", "rhd"), os.path.join(out, "data", "tfds")
    spec = launcher_data.DataSpec(num_train, num_eval, seed)
    data = launcher_data.prepare_owned_data(spec, raw, tfds_dir, ledger, timings, progress)
    runs = plan(out, steps, tiny)
    how, why = launcher.choose_executor("auto", runs)  # S1, S4: two strategies, no population
    print(f"  training: {how} ({why})", flush=True)
    trained = launcher.train_owned(runs, data, tfds_dir, ledger, timings, progress, how)
    results = launcher_evaluation.evaluate_owned(runs, trained, tfds_dir, eval_examples, ledger,
                                                 timings, progress)
    progress("report", f"report → {os.path.join(out, 'report.md')}")
    timings["total_this_run_s"] = time.perf_counter() - start
    info = {"num_train": num_train, "num_eval": num_eval, "steps": steps, "seed": seed,
            "cpu_count": os.cpu_count(), "eval_examples": eval_examples}
    workdirs = {run.label: (run.inputs["strategy"], run.workdir) for run in runs}
    write_report(out, results, workdirs, timings, info)
    print(f"\ndone in {timings['total_this_run_s']:.0f} s; open {os.path.join(out, 'report.md')}")
    return {"results": results, "timings": timings}


# Quoted from Yang et al. (ICCV 2019) for orientation only: real RHD/STB, full-size model.
PAPER_REFERENCE = {"paper S4, RHD (real data)": {"mean_epe_mm": 13.14},
                   "paper S4, STB (real data)": {"mean_epe_mm": 7.05}}
FIGURES = (("poses.png", "Predicted (colour) over ground-truth (grey) poses, from RGB only"),
           ("reconstruction.png", "Fig. 3 style: point cloud decoded from z_rgb beside the "
                                  "ground-truth cloud and the RGB crop"),
           ("interpolation.png", "Figs. 1/4 style: poses (and clouds) decoded along the line "
                                 "between z_rgb of two test images"))


def _baseline_row(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    rows = [r["constant_pose_baseline"] for r in results.values() if "constant_pose_baseline" in r]
    return {"constant guess (test mean pose)": rows[0]} if rows else {}


def _evaluated_on(results: dict[str, dict[str, Any]], info: dict[str, Any]) -> str:
    """The sentence saying how many test frames the rows are over (N in the table)."""
    counts = sorted({int(r["num_examples"]) for r in results.values() if "num_examples" in r})
    n = ", ".join(map(str, counts))
    if info.get("eval_examples", -1) == -1:
        return f"Every row is over the whole test split (N = {n})." if counts else ""
    return (f"Only the first {info['eval_examples']} test frames were evaluated "
            f"(`--eval-examples`), so the rows, the constant guess included, are over N = {n}, "
            "not the whole split.")


def benchmark_section(info: dict[str, Any], path: str = BENCHMARK_RESULTS) -> list[str]:
    """Markdown lines placing the demo (``info``: steps, num_train) against the committed
    cpu-scale results (``path``); a line saying so where those are missing or unreadable."""
    lines = ["## How the demo relates to the benchmark\n"]
    try:
        with open(path) as f:
            bench = json.load(f)
        table = bench["table1"]
    except (OSError, ValueError, KeyError) as err:
        return lines + [f"No benchmark results to compare with ({path}: {err}).\n"]
    rows = {f"benchmark {label} ({strategy}), {table[strategy]['num_seeds']} seed(s)": {
        key: table[strategy][key] for key in ("mean_epe_mm", "median_epe_mm", "auc_20_50")
        if key in table[strategy]} for label, strategy in MODELS if strategy in table}
    cpu = reproduce_config.SCALES["cpu"]
    return lines + [
        "The demo config (`experiments/configs/demo.py`) is the reproduction's `cpu` scale "
        f"({cpu.image_size}² crops, ResNet-18 of width {cpu.resnet_width}, {cpu.num_points} "
        f"cloud points, batch {cpu.batch_size}, augmentation on, the paper's objective), "
        f"trained for {info['steps']} steps on the demo's {info['num_train']} generated frames "
        f"instead of {cpu.steps:,} steps on the benchmark's {cpu.data.num_train:,} "
        "(`python -m experiments.reproduce --scale cpu`, results committed in "
        f"`{os.path.relpath(path, PROJECT_ROOT)}`, commit {bench.get('commit', '?')}). Its "
        "errors therefore sit above the benchmark's on the same learning curve; the "
        f"benchmark's test split is another {cpu.data.num_eval:,} frames of the same "
        "generator, so the rows compare in kind, not frame by frame.\n",
        report.comparison_table({}, reference=rows)]


def write_report(out: str, results: dict[str, dict[str, Any]],
                 workdirs: dict[str, tuple[str, str]], timings: dict[str, Any],
                 info: dict[str, Any]) -> str:
    """Writes ``<out>/report.md``, ``pck.png``, ``figures/`` and ``timings.json``.

    Args:
      out: the demo's output folder.
      results: model name ("S1 (R2P)") → the evaluation's metrics.json dict.
      workdirs: label ("S1") → (strategy, workdir); figures come from :func:`eval_dir`.
      timings: step → seconds (or "skipped (exists)").
      info: data/run sizes shown in the report.

    Returns:
      The path of report.md.
    """
    report.plot_pck(results, os.path.join(out, "pck.png"),
                    title="synthetic RHD-format test split: 3D PCK")
    os.makedirs(os.path.join(out, "figures"), exist_ok=True)
    figure_lines = []
    for label, (strategy, workdir) in workdirs.items():
        for filename, caption in FIGURES:
            src, dst = os.path.join(eval_dir(workdir), filename), f"{label}_{strategy}_{filename}"
            if os.path.exists(src):
                shutil.copyfile(src, os.path.join(out, "figures", dst))
                figure_lines.append(f"**{label} ({strategy})**: {caption}\n\n"
                                    f"![{label} {filename}](figures/{dst})\n")
    launcher_records.write_json(os.path.join(out, launcher_records.TIMINGS_FILE), timings,
                                indent=2)
    lines = [
        "# handvae demo: S1 (RGB → pose) vs S4 (RGB + point cloud, product of experts)\n",
        f"Synthetic RHD-format data: {info['num_train']} training / {info['num_eval']} test "
        f"frames (seed {info['seed']}); demo config (`experiments/configs/demo.py`), "
        f"{info['steps']} steps per model; {info['cpu_count']} CPU cores. Poses are "
        "predicted from the RGB crop alone and scored by hand3d's protocol (per keypoint "
        "over visible instances, then averaged; AUC over 20–50 mm). "
        + _evaluated_on(results, info) + "\n",
        "## Table 1 style comparison\n",
        report.comparison_table(results, reference=_baseline_row(results)),
        "The last row scores a constant guess, the test split's own mean pose, without "
        "looking at the image: a model has learned something from the RGB crop only where it "
        "beats that row.\n",
        "For orientation only, the paper's S4 on the real benchmarks (full-size model, far "
        "longer training, real images; not comparable with this toy run):\n",
        report.comparison_table({}, reference=PAPER_REFERENCE),
        *benchmark_section(info),
        "## 3D PCK\n", "![PCK](pck.png)\n", "## Figures\n", *figure_lines,
        "## Wall time\n", launcher_records.timings_table(timings),
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
    parser.add_argument("--num-train", type=int, default=NUM_TRAIN, help="synthetic train frames")
    parser.add_argument("--num-eval", type=int, default=256, help="synthetic test frames")
    parser.add_argument("--steps", type=int, default=demo_config.STEPS,
                        help="training steps per model")
    parser.add_argument("--eval-examples", type=int, default=-1,
                        help="test examples to evaluate (-1: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true",
                        help="delete --out (only a folder the demo wrote) and redo all")
    parser.add_argument("--tiny", action="store_true",
                        help="smoke model sizes (with small --num-train, --steps: a check)")
    args = parser.parse_args(argv)
    try:
        run_demo(args.out, num_train=args.num_train, num_eval=args.num_eval, steps=args.steps,
                 seed=args.seed, force=args.force, eval_examples=args.eval_examples,
                 tiny=args.tiny)
    except DemoArgumentError as error:
        parser.error(str(error))
    except StepFailed as error:
        print(f"\ndemo stopped: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
