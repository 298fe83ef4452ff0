r"""Reproduce the paper's findings on the synthetic benchmark: Table 1, Fig. 5 and Fig. 8.

    python -m experiments.reproduce --scale cpu --targets table1,fig5,fig8 --seeds 0,1 \
        --root results/reproduce/cpu

1. **data**: generates the benchmark (``data_prep.synthetic``, RHD layout, the scale's fixed
   frame counts and seed) and builds it with the RHD builder: ``rhd/synthetic`` (view
   corrected) and, for Fig. 5, ``rhd/synthetic_plain`` (no view correction);
2. **runs**: one training run per (setting, seed) with ``experiments/configs/reproduce.py``,
   the best checkpoint chosen on the validation split, then one evaluation of the test split;
3. **report**: ``table1.md`` (mean ± std over seeds of mean EPE, median EPE and AUC 20–50,
   the paper's column beside), ``fig5.png`` (3-D PCK of every strategy and of R2P without
   view correction), ``fig8.png`` (mean EPE against the labelled share m, supervised vs
   weakly supervised S4) and ``results.json`` (every number, the commit, the machine and
   the time of each run).

The data, the runs and their records go through the launcher (``experiments/launcher.py``),
which owns the child processes (a SIGTERM stops the trainer, then exits 143).
``--population=vmap`` trains each setting's seeds as one population, one vmapped program
(``experiments.launcher_population``; it gains on a GPU, not on 2 CPU cores, issue 25);
``off`` trains one run after another; ``auto`` (the default) is the launcher's measured rule
(``launcher.choose_executor``, ``experiments/launcher_choice.py``, as ``experiments.sweep``):
a population only where a committed ``benchmarks/figures/*/population.json`` of this device
kind measured ≥ 1.1× one run's member-steps/s with one batch per member (the seeds differ),
so sequential on 2 CPU cores; it prints which it chose and why. The records and the report
are the same in every mode. Resumable run by run: a finished run (its test metrics
written with the same settings) is skipped, an interrupted one resumes from its newest
checkpoint. Nothing is chosen on the test split: each run's checkpoint is the best by
validation EPE, and seeds are fixed up front.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from experiments import launcher, launcher_data, launcher_records, reproduce_report
from experiments.configs import reproduce as reproduce_config

TARGETS = ("table1", "fig5", "fig8")
TABLE1_STRATEGIES = reproduce_config.TABLE1_STRATEGIES
FIG8_SHARES = reproduce_config.FIG8_SHARES
FIG8_ARMS = ("supervised", "weak")   # Fig. 8's two arms below m = 100 % (plan_runs)
RUN_DONE = "reproduce_run.json"
REPO = launcher.REPO


class Run(NamedTuple):
    """One training run: a config argument and a seed; ``name`` is its work directory."""

    name: str
    config_arg: str
    seed: int
    view_correction: bool


def _run_name(strategy: str, seed: int, **extra: Any) -> str:
    parts = [strategy] + [f"{key}={value}" for key, value in sorted(extra.items())]
    return "_".join(parts) + f"_seed{seed}"


def plan_runs(targets: Sequence[str], seeds: Sequence[int], scale: str,
              strategies: Sequence[str] = TABLE1_STRATEGIES,
              shares: Sequence[float] = FIG8_SHARES,
              extra: Mapping[str, str] | None = None,
              arms: Sequence[str] = FIG8_ARMS) -> list[Run]:
    """The runs the targets need, each once (Table 1's S4 is Fig. 8's m = 100 %).

    Args:
      targets: a subset of :data:`TARGETS`.
      seeds: training seeds (the data set is the same for every seed).
      scale: a key of ``experiments.configs.reproduce.SCALES``.
      strategies: the Table-1 / Fig.-5 strategies to run (default all six).
      shares: Fig. 8's labelled shares m to run (default :data:`FIG8_SHARES`; any m in
        (0, 1], e.g. 0.01 to find where labels start to matter).
      extra: more ``experiments/configs/reproduce.py`` arguments for every run (an ablation,
        e.g. ``{"kl_reduction": "mean"}``); they become part of each run's name.
      arms: Fig. 8's arms to run at each share below 100 %: ``supervised`` (the first m %
        only, ``train_fraction``) and ``weak`` (the first m % labelled, the rest unlabelled,
        ``labelled``); e.g. the supervised arm alone to find where labels start to matter.

    Returns:
      Runs in a fixed order (the report does not depend on the order they ran in).

    Raises:
      ValueError: an unknown target, scale, strategy or share, or an empty seed list.
    """
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown or not targets:
        raise ValueError(f"--targets must be a non-empty subset of {TARGETS}, got {targets}")
    if scale not in reproduce_config.SCALES:
        raise ValueError(f"--scale must be one of {sorted(reproduce_config.SCALES)}, "
                         f"got {scale!r}")
    if not seeds:
        raise ValueError("--seeds needs at least one seed")
    bad = sorted(set(strategies) - set(TABLE1_STRATEGIES))
    if bad or not strategies:
        raise ValueError(f"--strategies must be a non-empty subset of {TABLE1_STRATEGIES}, "
                         f"got {list(strategies)}")
    if not arms or set(arms) - set(FIG8_ARMS):
        raise ValueError(f"--arms must be a non-empty subset of {FIG8_ARMS}, got {list(arms)}")
    odd = sorted(s for s in shares if not 0.0 < s <= 1.0)
    if odd or not shares:
        raise ValueError(f"--shares must be labelled shares m in (0, 1] (default "
                         f"{FIG8_SHARES}), got {list(shares)}")
    extra = dict(extra or {})
    planned = {"strategy", "scale", "seed", "view_correction", "train_fraction", "labelled"}
    bad_extra = sorted(set(extra) - (set(reproduce_config.DEFAULTS) - planned))
    if bad_extra:
        raise ValueError(f"--extra cannot set {bad_extra}; ablation arguments: "
                         f"{sorted(set(reproduce_config.DEFAULTS) - planned)}")
    runs: dict[str, Run] = {}

    def add(strategy: str, seed: int, view_correction: bool = True, **setting: Any) -> None:
        setting.update(extra)
        args = {"strategy": strategy, "scale": scale, "seed": seed, **setting}
        if not view_correction:
            args["view_correction"] = 0
        name = _run_name(strategy, seed, **({} if view_correction else {"vc": 0}), **setting)
        arg = ",".join(f"{key}={value}" for key, value in args.items())
        runs.setdefault(name, Run(name, arg, seed, view_correction))

    for seed in seeds:
        if "table1" in targets or "fig5" in targets:
            for strategy in TABLE1_STRATEGIES:
                if strategy in strategies:
                    add(strategy, seed)
        if "fig5" in targets:
            add("R2P", seed, view_correction=False)
        if "fig8" in targets:
            for share in sorted(set(shares)):
                if share == 1.0:
                    add("RC2CHP_poe", seed)
                    continue
                if "supervised" in arms:
                    add("RC2CHP_poe", seed, train_fraction=share)
                if "weak" in arms:
                    add("RC2CHP_poe", seed, labelled=share)
    return list(runs.values())


_call = launcher.call  # the one runner of child steps (kept for callers of the old name)
validation_curve = launcher_records.validation_curve  # (workdir) -> curve and best step


def prepare_data(root: str, scale: str, *, plain: bool, data_root: str | None = None
                 ) -> dict[str, Any]:
    """Generates and builds the scale's benchmark once; returns its description and timings.

    Args:
      root: the reproduction's folder (data under ``root/data`` unless ``data_root``).
      scale: a key of ``SCALES``.
      plain: also build the no-view-correction config (Fig. 5).
      data_root: a folder holding (or to hold) ``raw/`` and ``tfds/`` shared between roots;
        one generated with other sizes is refused (``launcher_data.prepare_shared_data``).
    """
    setting = reproduce_config.SCALES[scale].data
    configs = ("synthetic", "synthetic_plain") if plain else ("synthetic",)
    return launcher_data.prepare_shared_data(data_root or os.path.join(root, "data"),
                                        launcher_data.DataSpec(*setting), configs)


def run_spec(run: Run, root: str) -> launcher.RunSpec:
    """The launcher's description of ``run``: its work directory is ``<root>/runs/<name>``;
    its group, the setting (the name without the seed), is what may train as a population."""
    return launcher.RunSpec(name=run.name, workdir=os.path.join(root, "runs", run.name),
                            config=f"experiments/configs/reproduce.py:{run.config_arg}",
                            seed=run.seed, group=run.name.rsplit("_seed", 1)[0])


def execute_runs(runs: Sequence[Run], root: str, scale: str, tfds_dir: str,
                 how: str = "sequential") -> list[dict[str, Any]]:
    """Trains (or resumes) the runs through the launcher; returns their records, in order.

    Each trainer tests its best-by-validation checkpoint once at the end. A run's record
    (``<workdir>/reproduce_run.json``) holds its settings, test metrics, validation curve and
    wall time; a run whose record has the same settings is not run again (``skipped``).
    ``how`` names the launcher's executor (``launcher.EXECUTORS``): ``population`` trains each
    setting's seeds as one program, in ``<root>/runs/populations/<setting>``.
    """
    by_name = {run.name: run for run in runs}

    def identity(spec: launcher.RunSpec) -> dict[str, Any]:
        return {"name": spec.name, "config_arg": by_name[spec.name].config_arg,
                "scale": scale, "data_dir": tfds_dir}

    def fields(spec: launcher.RunSpec) -> dict[str, Any]:
        return {"seed": spec.seed, "view_correction": by_name[spec.name].view_correction}

    return launcher.train_recorded([run_spec(run, root) for run in runs], tfds_dir,
                                   identity=identity, record_file=RUN_DONE, fields=fields,
                                   log_file="reproduce.log", how=how)


def choose_executor(population: str, runs: Sequence[Run], root: str,
                    **rule: Any) -> tuple[str, str]:
    """``(executor, why)`` for ``--population`` over the planned runs: each setting's seeds
    are one group (:func:`run_spec`); ``rule``: ``device_kind``, ``figures`` of
    ``launcher.choose_executor``."""
    return launcher.choose_executor(population, [run_spec(run, root) for run in runs], **rule)


def execute_run(run: Run, root: str, scale: str, tfds_dir: str) -> dict[str, Any]:
    """Trains (or resumes) one run (:func:`execute_runs`); returns its record."""
    return execute_runs([run], root, scale, tfds_dir)[0]


def finished_record(run: Run, root: str) -> dict[str, Any] | None:
    """The record of ``run`` if it finished (any data directory), else None."""
    return launcher_records.read_record(os.path.join(root, "runs", run.name, RUN_DONE),
                                        {"config_arg": run.config_arg})


def reproduce(root: str, *, scale: str, targets: Sequence[str], seeds: Sequence[int],
              strategies: Sequence[str] = TABLE1_STRATEGIES,
              shares: Sequence[float] = FIG8_SHARES, data_root: str | None = None,
              report_only: bool = False, extra: Mapping[str, str] | None = None,
              how: str = "sequential", population: str | None = None,
              arms: Sequence[str] = FIG8_ARMS) -> dict[str, Any]:
    """Data, every run, then the report; returns the ``results.json`` payload.

    ``report_only``: run nothing; report the planned runs that have finished (the report
    then says how many of the planned runs it covers). ``how``: the launcher's executor.
    ``population`` (``auto``, ``vmap`` or ``off``, as ``--population``), when given, chooses
    the executor instead (``launcher.choose_executor`` over the plan) and prints its choice.
    """
    runs = plan_runs(targets, seeds, scale, strategies, shares, extra, arms)
    root = os.path.abspath(root)
    os.makedirs(root, exist_ok=True)
    start = time.perf_counter()
    if report_only:
        data: dict[str, Any] = {}
        records = [r for r in (finished_record(run, root) for run in runs) if r]
        print(f"report only: {len(records)} of {len(runs)} planned runs have finished")
    else:
        print(f"[1/3] benchmark data ({scale} scale)", flush=True)
        data = prepare_data(root, scale, plain="fig5" in targets, data_root=data_root)
        print(f"[2/3] {len(runs)} runs → {os.path.join(root, 'runs')}", flush=True)
        if population is not None:
            how, why = choose_executor(population, runs, root)
            print(f"      training: {how} ({why})", flush=True)
        records = execute_runs(runs, root, scale, data["tfds_dir"], how)
    print("[3/3] report", flush=True)
    payload = {
        "scale": scale, "targets": list(targets), "seeds": list(seeds),
        "strategies": list(strategies), "shares": sorted(set(shares)),
        "extra": dict(extra or {}), "data": data,
        "planned_runs": len(runs), **launcher.provenance(),
        "wall_s_this_call": time.perf_counter() - start, "runs": records,
    }
    written = reproduce_report.write_all(root, payload)
    print(f"done: {root} ({', '.join(written)})")
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.reproduce",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="results/reproduce",
                        help="output folder (runs/, table1.md, fig5.png, fig8.png, results.json)")
    parser.add_argument("--scale", default="cpu", help=f"one of {sorted(reproduce_config.SCALES)}")
    parser.add_argument("--targets", default="table1,fig5,fig8",
                        help=f"comma-separated subset of {TARGETS}")
    parser.add_argument("--seeds", default="0,1", help="comma-separated training seeds")
    parser.add_argument("--strategies", default=",".join(TABLE1_STRATEGIES),
                        help="comma-separated Table-1 strategies to run (default all six)")
    parser.add_argument("--shares", default=",".join(f"{s:g}" for s in FIG8_SHARES),
                        help="comma-separated labelled shares m of Fig. 8 to run (default all)")
    parser.add_argument("--arms", default=",".join(FIG8_ARMS),
                        help="comma-separated Fig. 8 arms to run below m = 100 %%: supervised "
                             "(first m %% only), weak (the rest unlabelled); default both")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing; report the planned runs that have finished")
    parser.add_argument("--data-root", default=None,
                        help="reuse (or create) the generated benchmark here instead of ROOT/data")
    parser.add_argument("--population", choices=launcher.POPULATION_MODES, default="auto",
                        help="vmap: each setting's seeds train as one vmapped program (gains on "
                             "a GPU); off: one run after another (faster on 2 CPU cores); "
                             "auto: vmap only where this device kind's committed "
                             "benchmarks/figures/*/population.json measured it faster")
    parser.add_argument("--extra", default="",
                        help="more reproduce-config arguments for every run, an ablation "
                             "(e.g. kl_reduction=mean,weak_batch=split); part of the run names")
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds must be integers separated by commas, got {args.seeds!r}")
    try:
        shares = [float(s) for s in args.shares.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--shares must be numbers separated by commas, got {args.shares!r}")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    extra = {}
    for item in (part.strip() for part in args.extra.split(",") if part.strip()):
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--extra takes key=value pairs, got {item!r}")
        extra[key.strip()] = value.strip()
    try:
        reproduce(args.root, scale=args.scale, targets=targets, seeds=seeds,
                  strategies=[s.strip() for s in args.strategies.split(",") if s.strip()],
                  shares=shares, data_root=args.data_root, report_only=args.report_only,
                  extra=extra, population=args.population,
                  arms=[a.strip() for a in args.arms.split(",") if a.strip()])
    except (ValueError, RuntimeError) as error:
        print(f"reproduce: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
