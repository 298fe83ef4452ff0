"""A CPU-sized run on the synthetic data: small crops and widths, a few minutes per strategy.

Command (after building the synthetic data set, see README)::

    python -m experiments.train --config experiments/configs/demo.py:strategy=RC2CHP_poe \\
        --workdir workdirs/demo_s4

Arguments: ``strategy`` (one of R2P, R2HP, R2CP, R2CHP, RC2CHP_kl, RC2CHP_poe; default
RC2CHP_poe) and ``steps`` (default 1500).

Expected result: about DEMO_MINUTES minutes on 2 CPU cores; the training loss falls steadily
and the final ``mean_epe_mm`` in ``final_metrics.json`` is well below the error of
predicting the mean pose.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The demo config (``arg``: ``strategy=...,steps=...``)."""
    args = common.parse_arg(arg, {"strategy": "RC2CHP_poe", "steps": 1500})
    config = common.get_base_config("synthetic")
    config.model.strategy = args["strategy"]

    config.data.image_size = config.model.image_size = 64
    config.data.heatmap_size = config.model.heatmap_size = 16
    # 64 points and a coarser auction ε keep S4's EMD (the dearest part of its step on a CPU)
    # at a third of the step time: ~6 S4 steps/s on 2 busy cores instead of ~2 at 128 points.
    config.data.num_points = config.model.num_points = 64
    config.data.shuffle_buffer = 256
    config.model.latent_dim = 32
    config.model.resnet_width = 8
    config.model.respel_width = 16
    config.model.pose_hidden = 64
    config.model.folding_hidden = 64
    config.loss.emd_epsilon = 1e-2
    config.loss.emd_max_iterations = 500

    steps = args["steps"]
    config.batch_size = 16
    config.num_train_steps = steps
    config.optimizer.lr = 1e-3
    config.optimizer.lr_boundaries = (int(steps * 0.6), int(steps * 0.85))
    config.model.beta_anneal_steps = steps // 2
    config.log_every = 50
    config.eval_every = 500
    config.checkpoint_every = 500
    config.num_eval_examples = 256
    return config
