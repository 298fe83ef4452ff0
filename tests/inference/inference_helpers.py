"""A tiny trained work directory shared by the inference and predict tests (one per process)."""

import os
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
REAL_RHD = SHARED / "real_samples" / "rhd"
_CACHE: dict[str, str] = {}


def tiny_config(strategy: str, data_dir: str):
    """The demo config at 32-px crops, 2 steps, batch 2 (seconds on a CPU)."""
    from experiments.configs import demo

    config = demo.get_config(f"strategy={strategy}")
    config.num_train_steps = 2
    config.data.data_dir = data_dir
    config.data.image_size = config.model.image_size = 32
    config.data.heatmap_size = config.model.heatmap_size = 8
    config.data.num_points = config.model.num_points = 32
    config.data.num_workers = 1
    config.model.latent_dim = 8
    config.model.resnet_width = 4
    config.model.respel_width = 8
    config.model.pose_hidden = 16
    config.model.folding_hidden = 16
    config.loss.emd_max_iterations = 200
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
