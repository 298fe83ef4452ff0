"""Defaults shared by every experiment config: the paper's hyper-parameters.

Each experiment config calls :func:`get_base_config` and sets the strategy and data set.
Field names are the contract with ``handvae.training`` and ``experiments.sweep``
(e.g. ``--config.model.beta_max=1e-2``, ``--config.loss.lambda_cloud=2``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_collections

DATASETS = ("rhd", "stb", "synthetic")


def get_base_config(dataset: str = "rhd") -> ml_collections.ConfigDict:
    """Paper defaults (Yang et al. 2019, Sec. 4): Adam 1e-4, batch 32, latent 64, ..."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    c = ml_collections.ConfigDict()
    c.seed = 0

    # Data. `synthetic` is RHD-format data written by data_prep.synthetic and built by the
    # same RHD builder (TFDS builder config `rhd/synthetic`).
    c.data = ml_collections.ConfigDict()
    c.data.dataset = dataset
    c.data.data_dir = ""          # TFDS data_dir; "" → $HANDVAE_DATA_DIR or ./data/tfds
    c.data.train_split = "train"
    c.data.eval_split = "test"
    c.data.image_size = 256       # crop side, pixels
    c.data.num_points = 256       # points sampled per cloud per step
    c.data.heatmap_size = 64      # heat-map side, pixels
    c.data.heatmap_sigma = 2.0    # Gaussian std, heat-map pixels
    c.data.augment = True
    c.data.augment_zoom = "out"   # scale s: window crop_side·s ("out") or crop_side/s ("in")
    # Sec. 5.3 / Fig. 8 (handvae.data.streams): train on the first train_fraction of the split
    # (supervised baseline at m%); label its first labelled_fraction (weak supervision at m%:
    # labelled_per_batch labelled rows per global batch, 0 = max(1, round(m·B))).
    c.data.train_fraction = 1.0
    c.data.labelled_fraction = 1.0
    c.data.labelled_per_batch = 0
    c.data.num_workers = 2
    c.data.cache_mb = 1024        # per-process cache of prepared training examples

    # Model.
    c.model = ml_collections.ConfigDict()
    c.model.strategy = "R2P"
    c.model.latent_dim = 64
    c.model.image_size = 256
    c.model.resnet_width = 64      # channels of ResNet-18's first stage
    c.model.respel_width = 64      # hidden units of ResPEL (half of Li & Lee's 128)
    c.model.num_points = 256
    c.model.heatmap_size = 64
    c.model.pose_hidden = 128
    c.model.folding_hidden = 256
    # KL weights: beta annealed beta_min → beta_max over beta_anneal_steps; beta' for S3.
    c.model.beta_min = 1e-5
    c.model.beta_max = 1e-3
    c.model.beta_anneal_steps = 100_000
    c.model.beta_anneal = "linear"   # "linear" in beta, or "log" (same factor every step)
    c.model.beta_prime = 1.0

    # Reconstruction weights.
    c.loss = ml_collections.ConfigDict()
    c.loss.lambda_heat = 0.01
    c.loss.lambda_cloud = 1.0
    c.loss.emd_epsilon = 1e-3        # final auction epsilon (normalised units)
    c.loss.emd_max_iterations = 10_000

    # Optimisation: Adam 1e-4, learning rate ÷10 twice.
    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.lr = 1e-4
    c.optimizer.lr_boundaries = (200_000, 300_000)  # steps at which lr is divided by 10
    c.optimizer.lr_decay = 0.1
    c.batch_size = 32
    c.num_train_steps = 350_000

    # Bookkeeping.
    c.log_every = 100
    c.eval_every = 5_000
    c.checkpoint_every = 5_000
    c.keep_checkpoints = 3
    c.num_eval_examples = -1  # -1: the whole eval split
    return c


def parse_arg(arg: str | None, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Parses a config argument ``"key=value,key=value"`` (or a bare value) over ``defaults``.

    ``experiments/configs/s2.py:decoders=chp,dataset=stb`` gives ``arg="decoders=chp,dataset=stb"``.
    A bare value (``s4_poe.py:stb``) sets the first key of ``defaults``. Values are converted
    to the type of the default.

    Raises:
      ValueError: for an unknown key (the message lists the known ones) or a bad value.
    """
    values = dict(defaults)
    if not arg:
        return values
    for i, item in enumerate(part for part in arg.split(",") if part):
        key, sep, value = item.partition("=")
        if not sep:
            if i != 0:
                raise ValueError(f"config argument {arg!r}: bare value {item!r} must come first")
            key, value = next(iter(defaults)), item
        key = key.strip()
        if key not in defaults:
            raise ValueError(f"config argument {arg!r}: unknown key {key!r}; known: "
                             f"{sorted(defaults)}")
        kind = type(defaults[key])
        try:
            values[key] = kind(value.strip())
        except ValueError:
            raise ValueError(f"config argument {arg!r}: {key}={value!r} is not a "
                             f"{kind.__name__}") from None
    return values
