r"""Grid sweeps: one training run per combination, each in ``<root>/<name>``, one results table.

Example (2 × 3 = 6 runs, sequential here)::

    python -m experiments.sweep --config experiments/configs/s4_poe.py:dataset=rhd \
        --root workdirs/s4_sweep --sweep 'loss.beta_max=1e-3,1e-2' \
        --sweep 'loss.lambda_cloud=0.5,1,2'

A population sweep (``--population``; ``handvae.training.population``): runs whose configs
differ only in population fields (seed, β's end points, β', λ_heat, λ_cloud, learning rate)
train as one jitted program, K members vmapped::

    python -m experiments.sweep --config experiments/configs/s4_poe.py:dataset=rhd \
        --root workdirs/s4_pop --population=vmap --sweep 'seed=0,1,2' \
        --sweep 'loss.beta_max=1e-3,1e-2'

``--population=vmap`` trains each group of grid points equal outside the population fields
as one population (a grid over another field, e.g. ``data.train_fraction``, gives several
populations; a group of one trains alone); its stacked checkpoints are in
``<root>/populations/<group>``, each member's work directory is a single run's.
``off`` trains one run after another. ``auto`` (the default) picks ``vmap`` only where a
committed ``benchmarks/figures/*/population.json`` of this device kind measured ≥ 1.1× one
run's member-steps/s for the group's K (so sequential on 2 CPU cores, where it measured
0.5–0.8×), and prints which it chose and why, per group; the rule is the launcher's
(``launcher.choose_population``, ``experiments/launcher_choice.py``), shared with
``experiments.reproduce --population``. ``sweep.csv``/``sweep.md`` are the same in
every mode.

``--print_only`` prints one ``python -m experiments.train`` command per run instead (for a
cluster's job array). ``--config.<field>=value`` overrides apply to every run. Afterwards
``<root>/sweep.csv`` and ``<root>/sweep.md`` hold, per run, the swept values, the status and
the final metrics (``final_metrics.json`` of each work directory). Runs already finished are
resumed (a no-op) rather than redone. A run that fails (any exception) is recorded in the
tables with its error and the sweep goes on to the next run; the exit status is then 1.
"""

from __future__ import annotations

import copy
import csv
import itertools
import json
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from experiments import launcher
from handvae.training import loop, population, population_loop

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Base config file, e.g. experiments/configs/s4_poe.py:dataset=rhd.",
    lock_config=True)
_SWEEPS = flags.DEFINE_multi_string(
    "sweep", [], "'field=v1,v2,...' (repeatable); the grid is the product of all of them.")
_ROOT = flags.DEFINE_string("root", None, "Folder that receives one work directory per run.")
_PRINT_ONLY = flags.DEFINE_bool("print_only", False, "Print the commands, do not train.")
_POPULATION = flags.DEFINE_enum(
    "population", "auto", ["auto", "vmap", "off"],
    "vmap: grid points differing only in population fields train as one vmapped program; "
    "off: one run after another; auto: vmap where this device kind's committed benchmark "
    "(benchmarks/figures/*/population.json) measured it faster.")
flags.mark_flags_as_required(["config", "root"])

POPULATION_MODES = launcher.POPULATION_MODES
# The measured rule of --population=auto is the launcher's (experiments/launcher_choice.py),
# shared with reproduce and the demo; kept under its old name here.
choose_population = launcher.choose_population
METRIC_COLUMNS = ("mean_epe_mm", "median_epe_mm", "auc_20_50", "auc_0_50", "train_loss",
                  "step")


def parse_sweep(spec: str) -> tuple[str, list[str]]:
    """``'loss.beta_max=1e-3,1e-2'`` → ``('loss.beta_max', ['1e-3', '1e-2'])``."""
    key, sep, values = spec.partition("=")
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not key.strip() or not items:
        raise ValueError(f"--sweep {spec!r}: expected 'field=value1,value2,...', e.g. "
                         "'loss.beta_max=1e-3,1e-2'")
    return key.strip(), items


def expand_grid(specs: Sequence[str]) -> list[dict[str, str]]:
    """The product of every ``--sweep``, in order (the last one varies fastest)."""
    parsed = [parse_sweep(s) for s in specs]
    keys = [k for k, _ in parsed]
    if len(set(keys)) != len(keys):
        raise ValueError(f"a field is swept twice: {keys}")
    return [dict(zip(keys, combo)) for combo in itertools.product(*(v for _, v in parsed))]


def run_name(assignment: dict[str, str]) -> str:
    """Work-directory name of a run, e.g. ``loss.beta_max=1e-3_loss.lambda_cloud=0.5``."""
    if not assignment:
        return "base"
    return "_".join(f"{k}={v}" for k, v in assignment.items()).replace("/", "-")


def _convert(key: str, current: Any, text: str) -> Any:
    if isinstance(current, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"--sweep {key}: {text!r} is not a bool (true/false)")
        return text.lower() in ("true", "1")
    if isinstance(current, int):
        number = float(text)
        if not number.is_integer():
            raise ValueError(f"--sweep {key}: {text!r} is not an integer")
        return int(number)
    if isinstance(current, float):
        return float(text)
    if isinstance(current, str):
        return text
    raise ValueError(f"--sweep {key}: fields of type {type(current).__name__} cannot be swept "
                     "(only bool, int, float and str)")


def apply_assignment(config: ml_collections.ConfigDict, assignment: dict[str, str]
                     ) -> ml_collections.ConfigDict:
    """A copy of ``config`` with the swept fields set (converted to the fields' types).

    Raises:
      ValueError: unknown field (the message names it) or a value of the wrong type.
    """
    config = copy.deepcopy(config)
    for key, text in assignment.items():
        *parents, leaf = key.split(".")
        node = config
        try:
            for name in parents:
                node = node[name]
            current = node[leaf]
        except (KeyError, AttributeError, TypeError):
            raise ValueError(f"--sweep {key}: no such config field") from None
        try:
            node[leaf] = _convert(key, current, text)
        except (ValueError, TypeError, OverflowError) as error:
            message = str(error)
            if not message.startswith(f"--sweep {key}:"):
                message = (f"--sweep {key}: {text!r} does not fit the field (a "
                           f"{type(current).__name__}, now {current!r}): {message}")
            raise ValueError(message) from None
    return config


def train_command(config_arg: str, workdir: str, assignment: dict[str, str],
                  overrides: dict[str, Any] | None = None) -> str:
    """The ``python -m experiments.train`` command line of one run."""
    parts = ["python", "-m", "experiments.train", f"--config={config_arg}",
             f"--workdir={workdir}"]
    for key, value in {**(overrides or {}), **assignment}.items():
        parts.append(f"--config.{key}={value}")
    return " ".join(shlex.quote(p) for p in parts)


def write_tables(root: str, rows: list[dict[str, Any]], keys: Sequence[str]) -> tuple[str, str]:
    """Writes ``<root>/sweep.csv`` and ``<root>/sweep.md``; returns their paths."""
    columns = ["name", *keys, "status", *METRIC_COLUMNS]
    csv_path, md_path = os.path.join(root, "sweep.csv"), os.path.join(root, "sweep.md")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    def cell(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    with open(md_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return csv_path, md_path


def population_groups(grid: Sequence[dict[str, str]],
                      configs: Sequence[ml_collections.ConfigDict]) -> list[list[int]]:
    """Indices of the grid points, grouped by equality outside the population fields (in
    order of first appearance)."""
    groups: dict[str, list[int]] = {}
    for index, config in enumerate(configs):
        groups.setdefault(population.shared_key(config), []).append(index)
    return list(groups.values())


def _group_name(assignment: dict[str, str]) -> str:
    rest = {k: v for k, v in assignment.items() if k not in population.POPULATION_FIELDS}
    return run_name(rest)


def _row(name: str, assignment: dict[str, str], result: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name, **assignment}
    if isinstance(result, BaseException):
        logging.error("sweep run %s failed: %s", name, result, exc_info=result)
        print(f"[sweep] run {name} failed ({type(result).__name__}: {result}); going on",
              file=sys.stderr, flush=True)
        row["status"] = (f"failed: {type(result).__name__}: {result}"
                         .replace("\n", " ").replace("|", "/")[:300])
    else:
        row.update({"status": "ok", **{k: result.get(k, "") for k in METRIC_COLUMNS}})
    return row


def run_sweep(config: ml_collections.ConfigDict, root: str, specs: Sequence[str], *,
              config_arg: str = "CONFIG", overrides: dict[str, Any] | None = None,
              print_only: bool = False,
              train_fn: Callable[[ml_collections.ConfigDict, str], dict] | None = None,
              population_mode: str = "off",
              population_fn: Callable[..., list] | None = None) -> list[dict[str, Any]]:
    """Runs (or prints) every combination of ``specs`` and gathers the final metrics.

    Args:
      config: the base config (overrides already applied).
      root: folder of the runs' work directories and of the tables.
      specs: ``--sweep`` strings.
      config_arg: the ``--config`` argument, for printed commands.
      overrides: ``--config.*`` overrides, for printed commands.
      print_only: print the commands and return without training.
      train_fn: ``(config, workdir) -> final metrics``; default ``train_and_evaluate``.
      population_mode: "off" (one run after another), "vmap" (each group of runs equal
        outside the population fields as one population) or "auto"
        (``launcher.choose_population``, per group).
      population_fn: ``(configs, workdirs, popdir) -> [final metrics or exception]``;
        default ``population_loop.train_population``.

    Returns:
      One row per run, in grid order whatever the mode: ``name``, the swept values,
      ``status`` ("ok" or the error) and the final metrics.
    """
    grid = expand_grid(specs)
    configs = [apply_assignment(config, a) for a in grid]  # fail on typos before any run
    if print_only:
        for assignment in grid:
            print(train_command(config_arg, os.path.join(root, run_name(assignment)),
                                assignment, overrides))
        return []
    train_fn = train_fn or loop.train_and_evaluate
    population_fn = population_fn or population_loop.train_population
    os.makedirs(root, exist_ok=True)
    keys = list(grid[0]) if grid else []
    rows: dict[int, dict[str, Any]] = {}

    def record(index: int, result: Any) -> None:
        rows[index] = _row(run_name(grid[index]), grid[index], result)
        write_tables(root, [rows[i] for i in sorted(rows)], keys)  # partial tables survive

    def train_one(index: int) -> Any:
        name = run_name(grid[index])
        print(f"[sweep] run {len(rows) + 1}/{len(grid)}: {name}", flush=True)
        return train_fn(configs[index], os.path.join(root, name))

    groups = ([[i] for i in range(len(grid))] if population_mode == "off"
              else population_groups(grid, configs))
    for group in groups:
        members = [configs[i] for i in group]
        mode, why = choose_population(
            population_mode, len(group),
            shared_batch=len({int(c.seed) for c in members}) == 1)
        if population_mode != "off":
            print(f"[sweep] {len(group)} run(s) {_group_name(grid[group[0]])}: {why}",
                  flush=True)
        if mode == "vmap" and len(group) > 1:
            names = [run_name(grid[i]) for i in group]
            print(f"[sweep] population of {len(group)}: {', '.join(names)}", flush=True)
            try:
                results = population_fn(
                    members, [os.path.join(root, n) for n in names],
                    os.path.join(root, "populations", _group_name(grid[group[0]])))
            except Exception as error:  # noqa: BLE001 - one failed group must not end it
                results = [error] * len(group)
            for index, result in zip(group, results):
                record(index, result)
            continue
        launcher.run_each(group, train_one, record)  # in turn; a failure is recorded
    ordered = [rows[i] for i in sorted(rows)]
    with open(os.path.join(root, "sweep.json"), "w") as f:
        json.dump(ordered, f, indent=2)
    return ordered


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    flag = flags.FLAGS["config"]
    rows = run_sweep(_CONFIG.value, _ROOT.value, _SWEEPS.value,
                     config_arg=config_flags.get_config_filename(flag),
                     overrides=config_flags.get_override_values(flag),
                     print_only=_PRINT_ONLY.value, population_mode=_POPULATION.value)
    if any(row["status"] != "ok" for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
