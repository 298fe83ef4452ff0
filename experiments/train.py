r"""Trains one experiment: ``python -m experiments.train --config CONFIG[:ARG] --workdir DIR``.

Examples::

    python -m experiments.train --config experiments/configs/s4_poe.py:dataset=rhd \
        --workdir workdirs/s4_rhd --config.optimizer.lr=2e-4
    python -m experiments.train --config experiments/configs/demo.py:strategy=R2P \
        --workdir workdirs/demo_r2p

The config is locked: ``--config.<field>=value`` may change existing fields only (a typo
fails). Training resumes from the newest checkpoint in ``--workdir`` when there is one.
``<workdir>/config.json`` is written only once the config is validated, the model built and
the checkpoint restored; a resume may change fields that keep the checkpoint's shapes and
strategy (e.g. ``--config.num_train_steps``), each change recorded in
``<workdir>/config_changes.jsonl``, and is refused (exit 2, nothing written) otherwise. A second
trainer on a work directory in use refuses at once, naming the holder (exit 2;
``handvae.training.workdir_lock``); unreadable checkpoints, data not built and a ``--workdir``
that is a file end in one line (exit 2). The
best checkpoint is chosen on ``config.data.validation_split``; the test split
(``config.data.eval_split``) is evaluated once at the end, on that checkpoint
(``final_metrics.json``'s ``test``).
``--verbosity=0`` brings back INFO logs (orbax's included). Set ``JAX_COMPILATION_CACHE_DIR``
to reuse compiled steps across runs (a resumed or swept run then starts in seconds).
On several hosts, start one process per host with ``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` set (or under SLURM/Open MPI); see
``handvae.training.sharding.maybe_initialize_distributed``.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from handvae.training import checkpoint, loop, sharding, workdir_lock

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, e.g. experiments/configs/s4_poe.py:dataset=rhd.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory (checkpoints, logs).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO; tqdm shows progress
    sharding.maybe_initialize_distributed()
    try:
        final = loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except loop.NonFiniteLossError as error:
        logging.error("%s", error)
        print(f"training stopped: {error}", file=sys.stderr)
        sys.exit(3)
    except ValueError as error:  # a bad config or resume: named field, nothing written
        print(f"experiments.train: {error}", file=sys.stderr)
        sys.exit(2)
    # Unreadable checkpoints, data not built, a --workdir that is a file, a workdir in use by
    # another trainer: each message names the file and the fix, so one line, no traceback.
    except (checkpoint.CheckpointReadError, workdir_lock.WorkdirLockedError, OSError) as error:
        print(f"experiments.train: {error}", file=sys.stderr)
        sys.exit(2)
    logging.info("final metrics: %s", final)


if __name__ == "__main__":
    app.run(main)
