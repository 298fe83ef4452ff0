r"""The one launcher: how demo, reproduce and sweep generate, build, train, test and record.

Every experiment that trains several models goes through the same stages, here and in the
launcher's small modules (``launcher_data``, ``launcher_evaluation``, ``launcher_records``,
``launcher_folders``, ``launcher_population``, ``launcher_choice``):

1. **data** (``launcher_data``): generate the synthetic benchmark (``data_prep.synthetic``,
   RHD layout) and build it with the RHD TFDS builder (``data_prep.build``). Two policies, one
   per kind of data folder: ``prepare_shared_data`` (a folder that several roots share,
   ``reproduce --data-root``: generated once, *refused* when asked for other sizes) and
   ``prepare_owned_data`` (inside a preset's own output folder, the demo: *redone* when its
   inputs change, with every step after it).
2. **plan**: a list of :class:`RunSpec` (name, work directory, config file and argument,
   seed, population group), in a fixed order; the presets make it (``reproduce.plan_runs``,
   the demo's two models). The sweep keeps its grid of in-memory configs (below).
3. **train**: an *executor* trains the runs not yet done (:data:`EXECUTORS`):
   ``sequential``, one ``experiments.train`` child after another, or ``population``, each
   group of runs that differ only in population fields (:attr:`RunSpec.group`: a setting's
   seeds) as one ``experiments.launcher_population`` child, one vmapped program
   (``handvae.training.population_loop``). An executor receives the pending runs, the data
   directory and two callbacks (``before(run)``, ``after(run, seconds)``) and calls ``after``
   for each run once its work directory holds a finished run, so skipping, records and
   reports do not depend on how the runs were trained. Which one trains a plan is
   ``--population=auto|vmap|off``, decided here for every preset and the sweep
   (:func:`choose_executor`, :func:`choose_population`; the measured rule of
   ``launcher_choice``: ``auto`` vmaps only where a committed ``population.json`` of this
   device kind measured ≥ 1.1× one run, so sequential on 2 CPU cores).
4. **test once**: the trainer tests the best-by-validation checkpoint once, in full, at the
   end (``final_metrics.json``, ``launcher_records.read_test_metrics``). The demo also
   evaluates each model in this process for its figures (``launcher_evaluation``), and
   reports only an evaluation made as it asked.
5. **record and report**: a record per run (:func:`train_recorded`, the run's identity, time,
   validation curve and test metrics, read back to skip a finished run) or a folder ledger
   (``steps.json``, :func:`train_owned`); the presets write their own report from them
   (``launcher_records`` has the shared pieces; output folders: ``launcher_folders``).

Child processes: every step that runs as a child goes through :func:`call`, from the
repository root (so ``-m experiments...`` resolves from any folder), and through
``experiments._subprocesses``, the one owner of child processes: a SIGTERM to the launcher
stops the child, then exits 143. A sweep trains in its own process: :func:`run_each` runs
its grid one run after another, a failed run recorded and the next one started.

Decision (moved from WORKSPACE.md)

**One launcher** (issue 25, item 3; `experiments/launcher.py` and its `launcher_*.py`
modules; design notes in its docstring). Demo and reproduce are presets: they plan
`RunSpec`s and the launcher generates, builds, trains (an executor of `launcher.EXECUTORS`:
`sequential`, or `population`, a setting's seeds as one `experiments.launcher_population`
child), tests once and records; the sweep's sequential runs go through `launcher.run_each`.
The launcher alone starts processes (through `experiments._subprocesses`). Two data
policies stay on purpose: a shared `--data-root` is refused when its sizes differ, never
deleted; the demo's own folder is redone when its inputs change.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import tqdm

from experiments import _subprocesses, launcher_records
from experiments.launcher_choice import (EXECUTOR_OF_MODE, FIGURES,  # noqa: F401 (API)
                                         POPULATION_MODES, choose_population)
from experiments.launcher_records import Ledger

REPO = launcher_records.REPO
# Modules each stage needs (written by other parts of the project).
NEEDS = {
    "generate": ("data_prep.synthetic",),
    "build": ("data_prep.build", "data_prep.rhd.rhd_dataset_builder"),
    "train": ("handvae.training.loop", "handvae.data.pipeline", "handvae.models.vae",
              "handvae.losses.objectives"),
    "evaluate": ("handvae.training.checkpoint", "handvae.data.pipeline", "handvae.models.vae"),
}


class StepFailed(RuntimeError):
    """A launcher step failed; the message names the step and the command to rerun."""


def missing_modules(stage: str) -> list[str]:
    """Modules of ``NEEDS[stage]`` that cannot be imported (parts not landed yet)."""
    missing = []
    for name in NEEDS[stage]:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except ModuleNotFoundError:
            missing.append(name)
    return missing


def require(stage: str) -> None:
    """Raises StepFailed naming the modules ``stage`` needs that this checkout lacks."""
    missing = missing_modules(stage)
    if missing:
        raise StepFailed(f"step {stage!r} needs {', '.join(missing)}, which this checkout does "
                         "not have yet (another part of the project); the steps before it are "
                         "done and a re-run resumes from here")


def call(cmd: Sequence[str], what: str, log_path: str | None = None, *,
         echo: bool = False) -> float:
    """Runs ``cmd`` as an owned child from the repository root; returns its seconds.

    Args:
      cmd: the command; ``-m experiments...`` resolves from any working directory.
      what: the step's name, for the error.
      log_path: append the child's output there (default: this terminal).
      echo: print ``$ cmd`` first.

    Raises:
      StepFailed: a non-zero exit (the message names the step, the log and the command).
      SystemExit: SIGTERM while waiting (143), the child stopped first.
    """
    if echo:
        print("  $ " + " ".join(cmd), flush=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    begin = time.perf_counter()
    if log_path:
        with open(log_path, "a") as log:
            returncode = _subprocesses.run(cmd, cwd=REPO, env=env, stdout=log,
                                           stderr=subprocess.STDOUT)
    else:
        returncode = _subprocesses.run(cmd, cwd=REPO, env=env)
    if returncode != 0:
        hint = f" (log: {log_path})" if log_path else ""
        raise StepFailed(f"step {what!r} failed (exit {returncode}){hint}; rerun it alone "
                         f"from {REPO} with:\n  {' '.join(cmd)}")
    return time.perf_counter() - begin


# Progress callback: ``progress(stage, text)``, stage one of :data:`STAGES`.
Progress = Callable[[str, str], None]
STAGES = ("generate", "build", "train", "evaluate", "report")


def stage_printer(start: float) -> Progress:
    """A :data:`Progress` that prints ``[3/5] text  (t = 12 s)``, seconds since ``start``."""

    def progress(stage: str, text: str) -> None:
        number, total = STAGES.index(stage) + 1, len(STAGES)
        print(f"\n[{number}/{total}] {text}  (t = {time.perf_counter() - start:5.0f} s)",
              flush=True)

    return progress


def commit() -> str:
    """The checkout's short commit hash, or "unknown"."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance() -> dict[str, Any]:
    """The commit and the machine (platform, CPU count) a report was made with."""
    return {"commit": commit(),
            "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()}}


# --- 2./3. runs and executors -------------------------------------------------------------

class RunSpec(NamedTuple):
    """One training run: ``experiments.train --config CONFIG --workdir WORKDIR FLAGS``."""

    name: str                      # unique in the plan; the work directory's name
    workdir: str
    config: str                    # "file.py:arg", absolute or relative to the repository
    seed: int = 0
    label: str = ""                # how progress and errors name it ("S1"); default name
    steps: int | None = None       # the run's length, where more steps resume (demo)
    inputs: Mapping[str, Any] = {}  # what else identifies it in a ledger (strategy, digest)
    flags: tuple[str, ...] = ()    # more trainer flags ("--verbosity=-1")
    group: str = ""                # runs of one group differ only in population fields

    @property
    def title(self) -> str:
        return self.label or self.name


def train_command(run: RunSpec, data_dir: str) -> list[str]:
    """The ``experiments.train`` command of ``run`` reading the data built in ``data_dir``."""
    return [sys.executable, "-m", "experiments.train", "--config", run.config,
            "--workdir", run.workdir, f"--config.data.data_dir={data_dir}", *run.flags]


Before = Callable[[RunSpec], None]
After = Callable[[RunSpec, float], None]
Executor = Callable[..., None]


def train_sequentially(runs: Sequence[RunSpec], data_dir: str, *, before: Before,
                       after: After, log_file: str | None = None) -> None:
    """One ``experiments.train`` child after another; ``after`` once each has finished."""
    for run in runs:
        require("train")  # before ``before``, which may clear a work directory
        before(run)
        os.makedirs(run.workdir, exist_ok=True)
        log_path = os.path.join(run.workdir, log_file) if log_file else None
        seconds = call(train_command(run, data_dir), f"train {run.title}", log_path,
                       echo=log_file is None)
        after(run, seconds)


def run_each(items: Sequence[Any], run_one: Callable[[Any], Any],
             record: Callable[[Any, Any], None]) -> None:
    """Runs ``run_one(item)`` in this process, one item after another (the sweep's runs).

    ``record(item, result)`` gets the item's result, or the exception it raised (its
    traceback attached, for the log): one failed run must not end the others.
    ``KeyboardInterrupt`` and ``SystemExit`` (a SIGTERM) still stop everything.
    """
    for item in items:
        try:
            result = run_one(item)
        except Exception as error:  # noqa: BLE001 - recorded as the run's result
            result = error
        record(item, result)


def population_dir(run: RunSpec) -> str:
    """``<parent of the work directory>/populations/<group>``: a group's stacked state."""
    return os.path.join(os.path.dirname(run.workdir), "populations", run.group)


def train_populations(runs: Sequence[RunSpec], data_dir: str, *, before: Before,
                      after: After, log_file: str | None = None) -> None:
    """Each group of two or more pending runs as one program; the others one by one.

    A group (:attr:`RunSpec.group`) is one ``experiments.launcher_population`` child that
    trains its members as a population (``handvae.training.population_loop``); its stacked
    checkpoints lie in :func:`population_dir`, its log there too, and each member records the
    group's wall time. A run without a group, or alone in it, trains as
    :func:`train_sequentially` does (the trainer flags of a grouped run are not passed on).
    """
    groups: dict[str, list[RunSpec]] = {}
    for run in runs:
        groups.setdefault(run.group or f"\0{run.name}", []).append(run)
    for members in groups.values():
        if len(members) == 1 or not members[0].group:
            train_sequentially(members, data_dir, before=before, after=after,
                               log_file=log_file)
            continue
        require("train")
        popdir = population_dir(members[0])
        os.makedirs(popdir, exist_ok=True)
        cmd = [sys.executable, "-m", "experiments.launcher_population", "--popdir", popdir,
               "--data_dir", data_dir]
        for run in members:
            before(run)
            os.makedirs(run.workdir, exist_ok=True)
            cmd += ["--workdir", run.workdir, "--config", run.config]
        log_path = os.path.join(popdir, log_file) if log_file else None
        seconds = call(cmd, f"train population {members[0].group} ({len(members)} runs)",
                       log_path, echo=log_file is None)
        for run in members:
            after(run, seconds)


# Registry of executors (plain dict; an unknown name fails loudly in `executor`).
EXECUTORS: dict[str, Executor] = {"sequential": train_sequentially,
                                  "population": train_populations}


def executor(name: str) -> Executor:
    """The executor registered as ``name``; ValueError naming the known ones."""
    if name not in EXECUTORS:
        raise ValueError(f"executor {name!r} is unknown; choose one of {sorted(EXECUTORS)}")
    return EXECUTORS[name]


def read_device_kind() -> str:
    """The default JAX device's kind (``"cpu"``, ``"NVIDIA H100 80GB HBM3"``), read by a
    short child so that this process loads no JAX and holds none of the accelerator's memory.

    Raises:
      StepFailed: the child failed (the message holds its output).
    """
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    cmd = [sys.executable, "-c", "import jax; print(jax.devices()[0].device_kind)"]
    with tempfile.TemporaryFile("w+") as out:
        code = _subprocesses.run(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        out.seek(0)
        text = out.read().strip()
    if code != 0 or not text:
        raise StepFailed(f"reading the JAX device kind failed (exit {code}): {text[-500:]}")
    return text.splitlines()[-1]


def choose_executor(mode: str, runs: Sequence[RunSpec], *,
                    device_kind: str | Callable[[], str] | None = None,
                    figures: str = FIGURES) -> tuple[str, str]:
    """``(executor, why)`` for ``--population=mode`` over a plan (:data:`EXECUTORS`' names).

    ``off`` and ``vmap`` name theirs (``sequential``, ``population``). ``auto`` applies
    ``launcher_choice.choose_population`` once for the plan: to its smallest group of two or
    more runs (:attr:`RunSpec.group`; reproduce's groups are a setting's seeds, all one
    size), with shared batches only if every such group's members share one seed. A plan
    without such a group is sequential and asks no device; otherwise the device kind is
    ``device_kind`` (a string or a function), by default :func:`read_device_kind`'s child.
    """
    if mode not in POPULATION_MODES:
        raise ValueError(f"--population must be one of {POPULATION_MODES}, got {mode!r}")
    if mode != "auto":
        return EXECUTOR_OF_MODE[mode], f"--population={mode}"
    groups: dict[str, list[RunSpec]] = {}
    for run in runs:
        if run.group:
            groups.setdefault(run.group, []).append(run)
    grouped = [members for members in groups.values() if len(members) > 1]
    if not grouped:
        return "sequential", ("auto: no group of two or more runs differing only in "
                              "population fields")
    shared = all(len({run.seed for run in members}) == 1 for members in grouped)
    choice, why = choose_population(mode, min(len(m) for m in grouped), shared_batch=shared,
                                    device_kind=device_kind or read_device_kind,
                                    figures=figures)
    return EXECUTOR_OF_MODE[choice], why


def train_recorded(runs: Sequence[RunSpec], data_dir: str, *,
                   identity: Callable[[RunSpec], dict[str, Any]], record_file: str,
                   fields: Callable[[RunSpec], dict[str, Any]] | None = None,
                   log_file: str | None = None, how: str = "sequential"
                   ) -> list[dict[str, Any]]:
    """Trains the runs without a matching record; returns every run's record, in order.

    Args:
      runs: the plan.
      data_dir: the built data's TFDS ``data_dir``.
      identity: a run's identifying fields; a record whose fields equal them is finished
        (returned with ``"skipped": True``, nothing run).
      record_file: the record's file name inside the work directory.
      fields: more fields to record (seed, settings).
      log_file: the trainer's output goes to this file of the work directory.
      how: the executor's name (:data:`EXECUTORS`).
    """
    train = executor(how)
    records: dict[str, dict[str, Any]] = {}
    for run in runs:
        found = launcher_records.read_record(os.path.join(run.workdir, record_file),
                                             identity(run))
        if found is not None:
            records[run.name] = {**found, "skipped": True}
    pending = [run for run in runs if run.name not in records]
    with tqdm.tqdm(total=len(runs), initial=len(records), desc="runs", unit="run",
                   dynamic_ncols=True) as bar:

        def before(run: RunSpec) -> None:
            bar.set_postfix_str(run.name)

        def after(run: RunSpec, seconds: float) -> None:
            records[run.name] = launcher_records.write_run_record(
                run.workdir, record_file, identity(run), seconds,
                **(fields(run) if fields else {}))
            bar.update()

        train(pending, data_dir, before=before, after=after, log_file=log_file)
    return [records[run.name] for run in runs]


def train_owned(runs: Sequence[RunSpec], data_inputs: Mapping[str, Any], data_dir: str,
                ledger: Ledger, timings: dict[str, Any], progress: Progress,
                how: str = "sequential") -> dict[str, dict[str, Any]]:
    """Trains the runs whose ledger entry or finished run is missing; returns their inputs.

    A run whose inputs changed trains afresh (its work directory deleted: it lies in the
    preset's own folder), except that more ``steps`` with the same inputs resume from the
    newest checkpoint. Ledger keys: ``train_<label>``.
    """
    train = executor(how)
    folder = os.path.dirname(ledger.path)
    all_inputs: dict[str, dict[str, Any]] = {}
    pending = []
    for run in runs:
        key = f"train_{run.title}"
        inputs = {"build": dict(data_inputs), **run.inputs, "steps": run.steps}
        all_inputs[run.name] = inputs
        if ledger.done(key, inputs) and launcher_records.trained(run.workdir, run.steps):
            progress("train", f"train {run.name}, {run.steps} steps → {run.workdir}")
            print("  same inputs, skipped")
            timings[f"{key}_s"] = launcher_records.earlier_seconds(folder, f"{key}_s")
        else:
            pending.append(run)

    def before(run: RunSpec) -> None:
        progress("train", f"train {run.name}, {run.steps} steps → {run.workdir}")
        key, inputs = f"train_{run.title}", all_inputs[run.name]
        earlier = ledger.recorded(key)
        ledger.start(key)
        resumable = (isinstance(earlier, dict) and earlier.get("steps", run.steps + 1)
                     <= run.steps and {**earlier, "steps": run.steps} == inputs)
        if not resumable:  # other data, config or fewer steps: train from scratch
            shutil.rmtree(run.workdir, ignore_errors=True)

    def after(run: RunSpec, seconds: float) -> None:
        timings[f"train_{run.title}_s"] = seconds
        ledger.finish(f"train_{run.title}", all_inputs[run.name])

    train(pending, data_dir, before=before, after=after)
    return all_inputs
