"""A tiny trained work directory shared by the inference and predict tests (one per process)."""

import os
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
REAL_RHD = SHARED / "real_samples" / "rhd"
_CACHE: dict[str, str] = {}


def tiny_config(strategy: str, data_dir: str):
    """The demo config's ``tiny`` variant (32-px crops), 2 steps, batch 2 (seconds on a CPU)."""
    from experiments.configs import demo

    config = demo.get_config(f"strategy={strategy},tiny")
    config.data.data_dir = data_dir
    config.num_train_steps = 2
    config.batch_size = 2
    config.log_every = config.checkpoint_every = 2
    config.eval_every = 1000
    return config


def trained_workdir(root: pathlib.Path, data_dir: str, strategy: str = "R2HP") -> str:
    """Trains ``strategy`` for 2 steps under ``root`` once per process; returns the workdir."""
    if strategy not in _CACHE:
        from handvae.training import loop

        workdir = os.path.join(str(root), f"tiny_{strategy}")
        loop.train_and_evaluate(tiny_config(strategy, data_dir), workdir, eval_batches=False)
        _CACHE[strategy] = workdir
    return _CACHE[strategy]
