r"""The launcher's population child: runs that differ only in population fields, one program.

    python -m experiments.launcher_population --popdir DIR --data_dir TFDS \
        --workdir W1 --config CONFIG.py:ARG1 --workdir W2 --config CONFIG.py:ARG2 ...

Started by the launcher's ``population`` executor (``experiments/launcher.py``), one child per
group of runs, so the parent stays free of JAX and a SIGTERM stops the child like any
trainer. It trains the members with ``handvae.training.population_loop.train_population``:
stacked checkpoints in ``--popdir``, each member's work directory a single run's
(``final_metrics.json`` with its test, ``metrics.jsonl``), so the launcher records them as
it records a run trained alone. Each ``--config`` is a config file and its argument, as
``experiments.train`` takes it; ``--data_dir`` is every member's ``config.data.data_dir``.

Exit status: 0 when every member finished; 3 when a member's loss became NaN/Inf (the others
finished; one line each names it); 2 for a bad config, a population that is not one (the
fields named), or data not built (one line).
"""

from __future__ import annotations

import importlib.util
import os
import sys

import ml_collections
from absl import app, flags, logging

_POPDIR = flags.DEFINE_string("popdir", None, "The population's folder (stacked checkpoints).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data_dir of every member.")
_WORKDIRS = flags.DEFINE_multi_string("workdir", [], "A member's work directory (in order).")
_CONFIGS = flags.DEFINE_multi_string("config", [], "A member's CONFIG.py[:ARG] (in order).")
flags.mark_flags_as_required(["popdir", "data_dir"])


def load_config(config: str) -> ml_collections.ConfigDict:
    """``get_config(ARG)`` of the config file ``PATH[:ARG]`` (as ``experiments.train``)."""
    path, _, arg = config.partition(":")
    if not os.path.isfile(path):
        raise ValueError(f"--config {config}: no config file {path}")
    spec = importlib.util.spec_from_file_location(
        f"launcher_population_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    workdirs, configs = _WORKDIRS.value, _CONFIGS.value
    if len(workdirs) != len(configs) or len(configs) < 1:
        raise app.UsageError(f"one --config per --workdir: {len(configs)} configs, "
                             f"{len(workdirs)} work directories")
    from handvae.training import checkpoint, loop, population_loop, workdir_lock
    try:
        members = [load_config(config) for config in configs]
        for member in members:
            member.data.data_dir = _DATA_DIR.value
        results = population_loop.train_population(members, workdirs, _POPDIR.value)
    except (ValueError, checkpoint.CheckpointReadError, workdir_lock.WorkdirLockedError,
            OSError) as error:
        print(f"experiments.launcher_population: {error}", file=sys.stderr)
        sys.exit(2)
    failed = [(w, r) for w, r in zip(workdirs, results) if isinstance(r, Exception)]
    for workdir, error in failed:
        print(f"training stopped: {workdir}: {error}", file=sys.stderr)
    if failed:
        sys.exit(3 if all(isinstance(r, loop.NonFiniteLossError) for _, r in failed) else 1)


if __name__ == "__main__":
    app.run(main)
