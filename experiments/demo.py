r"""``make demo``: the whole mission on synthetic data, on a laptop CPU, in about 15 minutes.

    python -m experiments.demo --out results/demo

1. writes a synthetic hand data set in RHD's on-disk layout (``data_prep.synthetic``);
2. builds it with the RHD TFDS builder (``data_prep.build``, config ``synthetic``);
3. trains the demo config (``experiments/configs/demo.py``) with S1 (``R2P``, RGB → pose)
   and S4 (``RC2CHP_poe``, RGB + point cloud → pose, heat maps, cloud, product of experts);
4. evaluates both from RGB only by hand3d's protocol (``experiments.evaluate``);
5. writes ``<out>/report.md``: a Table-1-style comparison, the PCK plot of both, the
   paper-style figures (poses, Fig. 3 reconstructions, Figs. 1/4 interpolations) and where
   the demo sits against the committed benchmark results (``experiments/results/cpu``: the
   demo config is that benchmark's ``cpu`` scale, run shorter on fewer frames).

Each step records its inputs (sizes, seed, strategy, steps, the config file's hash) in
``<out>/steps.json`` and is skipped when they are unchanged; a step whose inputs changed is
redone, and so is every step after it (a model trained on other data is trained afresh;
more ``--steps`` resume from the newest checkpoint). Arguments are checked before anything is
written. ``--force`` redoes everything: it deletes the demo's own entries of ``--out`` (only
in a folder the demo wrote: it carries ``.handvae-demo``) and keeps, naming them, any other
files there (e.g. ``predict/``, where the README writes predictions). A SIGTERM stops the
step's child process too (``experiments._subprocesses``). Works from any folder. Layout under
``--out``::

    data/synthetic/rhd/   raw RHD-format data      data/tfds/   the built TFDS data set
    workdirs/S1_R2P/, workdirs/S4_RC2CHP_poe/  (config.json, checkpoints, eval/test_best/)
    report.md, pck.png, figures/, timings.json, steps.json
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from typing import Any

from experiments import _subprocesses
from experiments.configs import demo as demo_config
from experiments.configs import reproduce as reproduce_config
from handvae.evaluation import report

MODELS = (("S1", "R2P"), ("S4", "RC2CHP_poe"))
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CONFIG = os.path.join(PROJECT_ROOT, "experiments", "configs", "demo.py")
# The reproduction's committed cpu-scale results (the demo config is that scale, run shorter).
BENCHMARK_RESULTS = os.path.join(PROJECT_ROOT, "experiments", "results", "cpu", "results.json")
DEMO_MARKER = ".handvae-demo"  # marks --out as a demo folder (only such folders are deleted)
STEPS_FILE = "steps.json"  # each finished step's inputs; a step whose inputs change is redone
LAYOUT = {"data", "workdirs", "report.md", "pck.png", "figures", "timings.json", STEPS_FILE,
          DEMO_MARKER}
# Disk per frame (raw PNGs ≈ 220 kB + built TFDS records ≈ 180 kB, measured on 50 frames)
# and host memory per frame while generating and building (job lists, annotations).
DISK_BYTES_PER_FRAME = 450_000
HOST_BYTES_PER_FRAME = 4_000
SPLIT, WHICH = "test", "best"
NUM_TRAIN = 3000  # generated training frames (5 % of them become the validation split)
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


class DemoArgumentError(ValueError):
    """A demo argument is out of range, or ``--out`` is not a folder the demo may use."""


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
    """Runs ``cmd`` from the project root (so ``-m experiments...`` resolves from any folder)
    with its output on this terminal; returns seconds; StepFailed on error."""
    print("  $ " + " ".join(cmd), flush=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PROJECT_ROOT, env.get("PYTHONPATH")) if p)
    begin = time.perf_counter()
    returncode = _subprocesses.run(cmd, cwd=PROJECT_ROOT, env=env)  # stopped with the demo
    if returncode != 0:
        raise StepFailed(f"step {step!r} failed (exit {returncode}); rerun it alone "
                         f"from {PROJECT_ROOT} with:\n  {' '.join(cmd)}")
    return time.perf_counter() - begin


def check_arguments(*, num_train: int, num_eval: int, steps: int, seed: int,
                    eval_examples: int) -> None:
    """Raises DemoArgumentError naming the first bad argument (before anything is touched)."""
    for flag, value, low in (("--num-train", num_train, 1), ("--num-eval", num_eval, 1),
                             ("--steps", steps, 1), ("--seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise DemoArgumentError(f"{flag} must be an integer ≥ {low}, got {value!r}")
    if isinstance(eval_examples, bool) or not isinstance(eval_examples, int) or not (
            eval_examples == -1 or eval_examples >= 1):
        raise DemoArgumentError(f"--eval-examples must be -1 (all) or ≥ 1, got "
                                f"{eval_examples!r}")


def _existing_ancestor(path: str) -> str:
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def available_memory_bytes() -> int | None:
    """Memory available to new allocations (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_size(out: str, num_frames: int) -> None:
    """Raises DemoArgumentError when ``num_frames`` would not fit the free disk or memory."""
    disk = num_frames * DISK_BYTES_PER_FRAME
    free = shutil.disk_usage(_existing_ancestor(out)).free
    if disk > free:
        raise DemoArgumentError(
            f"--num-train + --num-eval = {num_frames} frames need about {disk / 1e9:.3g} GB "
            f"of disk under {out} ({DISK_BYTES_PER_FRAME / 1e3:.0f} kB a frame), but only "
            f"{free / 1e9:.3g} GB are free; lower --num-train/--num-eval or choose another "
            "--out")
    memory, available = num_frames * HOST_BYTES_PER_FRAME, available_memory_bytes()
    if available is not None and memory > available:
        raise DemoArgumentError(
            f"--num-train + --num-eval = {num_frames} frames need about {memory / 1e9:.3g} GB "
            f"of memory to generate and build, but {available / 1e9:.3g} GB are available; "
            "lower --num-train/--num-eval")


def _is_demo_folder(out: str) -> bool:
    if os.path.isfile(os.path.join(out, DEMO_MARKER)):
        return True
    # A demo folder written before the marker existed: only the demo's own entries.
    entries = set(os.listdir(out))
    return bool(entries) and entries <= LAYOUT and "data" in entries


def _delete_own_entries(out: str) -> list[str]:
    """Deletes the demo's own entries of ``out`` (:data:`LAYOUT`); returns the others, kept."""
    kept = []
    for entry in sorted(os.listdir(out)):
        path = os.path.join(out, entry)
        if entry not in LAYOUT:
            kept.append(entry)
        elif os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    return kept


def prepare_out(out: str, force: bool) -> None:
    """Makes ``out`` (marked as a demo folder); with ``force`` deletes the demo's entries.

    ``force`` deletes only what the demo writes (:data:`LAYOUT`); other files in ``out``
    (the README's ``predict/``, notes) are kept and named.

    Raises:
      DemoArgumentError: ``out`` is a file, the working directory or one of its parents, or
        a non-empty folder that the demo did not write (nothing is deleted then).
    """
    if os.path.exists(out) and not os.path.isdir(out):
        raise DemoArgumentError(f"--out {out} is a file; choose a folder")
    real, cwd = os.path.realpath(out), os.path.realpath(os.getcwd())
    if os.path.isdir(out) and os.listdir(out):
        if real == cwd or cwd.startswith(real.rstrip(os.sep) + os.sep):
            raise DemoArgumentError(f"--out {out} is the working directory or one of its "
                                    "parents; choose a new folder, e.g. results/demo")
        if not _is_demo_folder(out):
            raise DemoArgumentError(
                f"--out {out} is not empty and was not written by the demo (no {DEMO_MARKER} "
                "marker); the demo will neither write into it nor delete it: choose another "
                "--out")
        if force:
            kept = _delete_own_entries(out)
            if kept:
                print(f"--force: kept {', '.join(kept)} in {out} (not written by the demo)")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, DEMO_MARKER), "w") as f:
        f.write("Written by `python -m experiments.demo`; --force may delete this folder.\n")


def _read_steps(out: str) -> dict[str, Any]:
    try:
        with open(os.path.join(out, STEPS_FILE)) as f:
            steps = json.load(f)
    except (OSError, ValueError):
        return {}
    return steps if isinstance(steps, dict) else {}


class StepRecord:
    """``<out>/steps.json``: the inputs each finished step ran with.

    A step is done when its recorded inputs equal its current inputs (and its outputs
    exist); each step's inputs include those of the steps it reads, so a change anywhere
    redoes that step and every step after it.
    """

    def __init__(self, out: str):
        self.path = os.path.join(out, STEPS_FILE)
        self.steps = _read_steps(out)

    def done(self, step: str, inputs: dict[str, Any]) -> bool:
        return self.steps.get(step) == inputs

    def recorded(self, step: str) -> Any:
        return self.steps.get(step)

    def _save(self) -> None:
        with open(self.path, "w") as f:
            json.dump(self.steps, f, indent=2, sort_keys=True)

    def start(self, step: str) -> None:
        """Forgets ``step`` (it is being redone; an interruption leaves it not done)."""
        if self.steps.pop(step, None) is not None:
            self._save()

    def finish(self, step: str, inputs: dict[str, Any]) -> None:
        self.steps[step] = inputs
        self._save()


def _file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


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


def eval_dir(workdir: str) -> str:
    """The folder of the demo's evaluation of ``workdir`` (metrics.json and figures).

    The one place that knows where evaluation files live:
    ``<workdir>/eval/<split>_<which>`` (the split and checkpoint of :data:`SPLIT`,
    :data:`WHICH`).
    """
    return os.path.join(workdir, "eval", f"{SPLIT}_{WHICH}")


def read_evaluation(workdir: str, eval_examples: int = -1) -> dict[str, Any] | None:
    """The metrics of the demo's evaluation of ``workdir``, or None when absent or foreign.

    Only an evaluation made as the demo asks counts: of ``eval_examples`` test examples
    (-1: the whole split, and it must have covered it). Another one written to the same
    folder (``experiments.evaluate --num_examples 4 --out ...``, or one written before the
    evaluation recorded its request) returns None, so the demo evaluates again instead of
    reporting it.
    """
    try:
        with open(os.path.join(eval_dir(workdir), "metrics.json")) as f:
            metrics = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict) or metrics.get("requested_examples") != eval_examples:
        return None
    if eval_examples == -1 and metrics.get("full_split") is not True:
        return None
    return metrics


def run_demo(out: str, *, num_train: int, num_eval: int, steps: int, seed: int = 0,
             force: bool = False, eval_examples: int = -1) -> dict[str, Any]:
    """Runs the five steps; returns ``{"results": {label: metrics}, "timings": {...}}``.

    Every argument is checked before anything is written or deleted.

    Raises:
      DemoArgumentError: a bad argument, too many frames for the free disk or memory, or an
        ``out`` the demo may not use.
      StepFailed: a step failed or a part of the project it needs is missing.
    """
    check_arguments(num_train=num_train, num_eval=num_eval, steps=steps, seed=seed,
                    eval_examples=eval_examples)
    out = os.path.abspath(out)
    check_size(out, num_train + num_eval)
    start = time.perf_counter()
    raw = os.path.join(out, "data", "synthetic", "rhd")
    tfds_dir = os.path.join(out, "data", "tfds")
    timings: dict[str, Any] = {}
    total = 5
    py = sys.executable
    prepare_out(out, force)
    record = StepRecord(out)

    def require(step: str) -> None:
        missing = missing_modules(step)
        if missing:
            raise StepFailed(f"step {step!r} needs {', '.join(missing)}, which this checkout "
                             "does not have yet (another part of the project); the steps "
                             "before it are done and a re-run resumes from here")

    # 1. Generate.
    data_inputs = {"num_train": num_train, "num_eval": num_eval, "seed": seed}
    _banner(1, total, f"synthetic RHD-format data: {num_train} train / {num_eval} eval "
                      f"frames → {raw}", start)
    if record.done("generate", data_inputs) and os.path.isdir(raw):
        print("  same inputs, skipped")
        timings["generate_s"] = _earlier(out, "generate_s")
    else:
        require("generate")
        record.start("generate")
        # Inside the demo's own (marked) folder; also clears data of a demo version that
        # predates the generator's marker.
        shutil.rmtree(raw, ignore_errors=True)
        timings["generate_s"] = _run(
            [py, "-m", "data_prep.synthetic", "--format", "rhd", "--out", raw,
             "--num-train", str(num_train), "--num-eval", str(num_eval), "--seed", str(seed)],
            "generate")
        record.finish("generate", data_inputs)

    # 2. Build.
    build_inputs = {"data": data_inputs}
    _banner(2, total, f"TFDS build (rhd/synthetic, array_record) → {tfds_dir}", start)
    if record.done("build", build_inputs) and os.path.isdir(tfds_dir):
        print("  same inputs, skipped")
        timings["build_s"] = _earlier(out, "build_s")
    else:
        require("build")
        record.start("build")
        shutil.rmtree(tfds_dir, ignore_errors=True)  # inside the demo's own folder
        timings["build_s"] = _run(
            [py, "-m", "data_prep.build", "--dataset", "rhd", "--config", "synthetic",
             "--manual_dir", raw, "--data_dir", tfds_dir], "build")
        record.finish("build", build_inputs)

    # 3. Train. Inputs: the data, the strategy and the config file; more steps resume.
    config_digest = _file_digest(DEMO_CONFIG)
    workdirs, train_inputs = {}, {}
    for label, strategy in MODELS:
        workdir = os.path.join(out, "workdirs", f"{label}_{strategy}")
        workdirs[label] = (strategy, workdir)
        key = f"train_{label}"
        inputs = {"build": build_inputs, "strategy": strategy, "config": config_digest,
                  "steps": steps}
        train_inputs[label] = inputs
        _banner(3, total, f"train {label} ({strategy}), {steps} steps → {workdir}", start)
        if record.done(key, inputs) and _trained(workdir, steps):
            print("  same inputs, skipped")
            timings[f"{key}_s"] = _earlier(out, f"{key}_s")
            continue
        require("train")
        before = record.recorded(key)
        record.start(key)
        same_run = (isinstance(before, dict) and before.get("steps", steps + 1) <= steps
                    and {**before, "steps": steps} == inputs)
        if not same_run:  # other data, config or fewer steps: train from scratch
            shutil.rmtree(workdir, ignore_errors=True)
        timings[f"{key}_s"] = _run(
            [py, "-m", "experiments.train",
             "--config", f"{DEMO_CONFIG}:strategy={strategy},steps={steps}",
             "--workdir", workdir, f"--config.data.data_dir={tfds_dir}",
             "--verbosity=-1"],  # absl: warnings only; the progress bar stays
            f"train {label}")
        record.finish(key, inputs)

    # 4. Evaluate (in this process; the figures come with it).
    results = {}
    for label, (strategy, workdir) in workdirs.items():
        name = f"{label} ({strategy})"
        key = f"evaluate_{label}"
        inputs = {"train": train_inputs[label], "split": SPLIT, "which": WHICH,
                  "eval_examples": eval_examples}
        _banner(4, total, f"evaluate {name} from RGB only ({SPLIT} split)", start)
        metrics = read_evaluation(workdir, eval_examples)
        if record.done(key, inputs) and metrics is not None:
            print("  same inputs, skipped")
            timings[f"{key}_s"] = _earlier(out, f"{key}_s")
        else:
            require("evaluate")
            record.start(key)
            shutil.rmtree(eval_dir(workdir), ignore_errors=True)
            from experiments import evaluate
            begin = time.perf_counter()
            evaluate.evaluate_workdir(workdir, split=SPLIT, which=WHICH,
                                      num_examples=eval_examples, data_dir=tfds_dir,
                                      name=name, out_dir=eval_dir(workdir))
            timings[f"{key}_s"] = time.perf_counter() - begin
            record.finish(key, inputs)
            metrics = read_evaluation(workdir, eval_examples)
            if metrics is None:
                raise StepFailed(f"step {key!r} wrote no metrics.json of the requested "
                                 f"examples in {eval_dir(workdir)}")
        results[name] = metrics
        print(f"  {name}: mean EPE {metrics['mean_epe_mm']:.2f} mm, "
              f"AUC 20–50 {metrics['auc_20_50']:.3f}")

    # 5. Report.
    _banner(5, total, f"report → {os.path.join(out, 'report.md')}", start)
    timings["total_this_run_s"] = time.perf_counter() - start
    info = {"num_train": num_train, "num_eval": num_eval, "steps": steps, "seed": seed,
            "cpu_count": os.cpu_count(), "eval_examples": eval_examples}
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


def _evaluated_on(results: dict[str, dict[str, Any]], info: dict[str, Any]) -> str:
    """The sentence saying how many test frames the rows are over (N in the table)."""
    counts = sorted({int(r["num_examples"]) for r in results.values() if "num_examples" in r})
    if info.get("eval_examples", -1) == -1:
        return (f"Every row is over the whole test split (N = {', '.join(map(str, counts))})."
                if counts else "")
    return (f"Only the first {info['eval_examples']} test frames were evaluated "
            "(`--eval-examples`), so the rows, the constant guess included, are over "
            f"N = {', '.join(map(str, counts))}, not the whole split.")


def _fmt_seconds(value: Any) -> str:
    return f"{value:.0f} s" if isinstance(value, (int, float)) else str(value)


def benchmark_section(info: dict[str, Any], path: str = BENCHMARK_RESULTS) -> list[str]:
    """Markdown lines placing the demo against the committed cpu-scale benchmark results.

    Args:
      info: the demo's sizes (``num_train``, ``steps``).
      path: the reproduction's ``results.json`` (``experiments/results/cpu``).

    Returns:
      The section's lines; a line saying so where ``path`` is missing or unreadable.
    """
    lines = ["## How the demo relates to the benchmark\n"]
    try:
        with open(path) as f:
            bench = json.load(f)
        table = bench["table1"]
    except (OSError, ValueError, KeyError) as err:
        return lines + [f"No benchmark results to compare with ({path}: {err}).\n"]
    rows = {}
    for label, strategy in MODELS:
        if strategy in table:
            entry = table[strategy]
            rows[f"benchmark {label} ({strategy}), {entry['num_seeds']} seed(s)"] = {
                key: entry[key] for key in ("mean_epe_mm", "median_epe_mm", "auc_20_50")
                if key in entry}
    relpath = os.path.relpath(path, PROJECT_ROOT)
    cpu = reproduce_config.SCALES["cpu"]
    lines += [
        "The demo config (`experiments/configs/demo.py`) is the reproduction's `cpu` scale "
        f"({cpu.image_size}² crops, ResNet-18 of width {cpu.resnet_width}, {cpu.num_points} "
        f"cloud points, batch {cpu.batch_size}, augmentation on, the paper's objective), "
        f"trained for {info['steps']} steps on the demo's {info['num_train']} generated frames "
        f"instead of {cpu.steps:,} steps on the benchmark's {cpu.data.num_train:,} "
        "(`python -m experiments.reproduce --scale cpu`, "
        f"results committed in `{relpath}`, commit {bench.get('commit', '?')}). Its errors "
        "therefore sit above the benchmark's on the same learning curve; the benchmark's test "
        f"split is another {cpu.data.num_eval:,} frames of the same generator, so the rows "
        "compare in kind, not frame by frame.\n",
        report.comparison_table({}, reference=rows),
    ]
    return lines


def write_report(out: str, results: dict[str, dict[str, Any]],
                 workdirs: dict[str, tuple[str, str]], timings: dict[str, Any],
                 info: dict[str, Any]) -> str:
    """Writes ``<out>/report.md``, ``pck.png``, ``figures/`` and ``timings.json``.

    Args:
      out: the demo's output folder.
      results: model name ("S1 (R2P)") → the evaluation's metrics.json dict.
      workdirs: label ("S1") → (strategy, workdir); figures are copied from
        :func:`eval_dir`.
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
            src = os.path.join(eval_dir(workdir), filename)
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
    parser.add_argument("--num-train", type=int, default=NUM_TRAIN, help="synthetic train frames")
    parser.add_argument("--num-eval", type=int, default=256, help="synthetic test frames")
    parser.add_argument("--steps", type=int, default=demo_config.STEPS,
                        help="training steps per model")
    parser.add_argument("--eval-examples", type=int, default=-1,
                        help="test examples to evaluate (-1: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true",
                        help="delete --out (only a folder the demo wrote) and redo all")
    args = parser.parse_args(argv)
    try:
        run_demo(args.out, num_train=args.num_train, num_eval=args.num_eval, steps=args.steps,
                 seed=args.seed, force=args.force, eval_examples=args.eval_examples)
    except DemoArgumentError as error:
        parser.error(str(error))
    except StepFailed as error:
        print(f"\ndemo stopped: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
