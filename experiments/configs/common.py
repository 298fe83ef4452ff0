"""Defaults shared by every experiment config: the paper's hyper-parameters.

Each experiment config calls :func:`get_base_config` and sets the strategy and data set; its
``tiny`` argument (``s4_poe.py:tiny``, ``demo.py:strategy=R2P,tiny``) applies
:func:`shrink_to_tiny`, the laptop/test size. Field names are the contract with
``handvae.training`` and ``experiments.sweep`` (e.g. ``--config.loss.beta_max=1e-2``,
``--config.loss.lambda_cloud=2``). Each value is written once: the model's crop, point and
heat-map sizes are references to ``config.data``'s (``get_ref``), so
``--config.data.image_size=128`` resizes both.

Config fields (moved from WORKSPACE.md)

Config fields: `config.model` holds exactly `HandVAE`'s fields (`strategy`, `latent_dim`,
`image_size`, `num_points`, `heatmap_size` — the last three `get_ref`s to `config.data`'s,
written once —, `resnet_width`, `respel_width`, `respel_blocks`, `heatmap_width`,
`pose_hidden`, `folding_hidden`, `poe_prior_expert`, `logvar_bias_init`); `config.loss`
holds the objective's (`lambda_heat`, `lambda_cloud`, `beta_min`, `beta_max`,
`beta_anneal_steps`, `beta_anneal`,
`beta_prime`, `emd_epsilon`, `emd_max_iterations`). Every experiment config takes a `tiny`
argument (`s4_poe.py:tiny`, `demo.py:strategy=R2P,tiny`; `common.shrink_to_tiny`), which the
tests use instead of hand-shrunk configs (tests/model_configs.py).
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
    c.data.validation_split = "validation"  # the best checkpoint is chosen on it
    c.data.eval_split = "test"    # the test split: evaluated once, at the end, never selected on
    c.data.image_size = 256       # crop side, pixels
    c.data.num_points = 256       # points sampled per cloud per step
    c.data.heatmap_size = 64      # heat-map side, pixels
    c.data.heatmap_sigma = 2.0    # Gaussian std, heat-map pixels
    c.data.view_correction = True  # False: the builders' *_plain crops (Fig. 5, Sec. 4.1)
    c.data.augment = True
    c.data.augment_zoom = "out"   # scale s: window crop_side·s ("out") or crop_side/s ("in")
    # Sec. 5.3 / Fig. 8 (handvae.data.streams): train on the first train_fraction of the split
    # (supervised baseline at m%); label its first labelled_fraction (weak supervision at m%).
    # weak_batch "added": every step the whole batch of B labelled rows plus B unlabelled rows
    # (Sec. 5.3); "split": B rows, labelled_per_batch of them labelled (0 = half, B // 2).
    c.data.train_fraction = 1.0
    c.data.labelled_fraction = 1.0
    c.data.weak_batch = "added"
    c.data.labelled_per_batch = 0
    c.data.num_workers = 2
    # "threads" (one cache, cheap start; enough on a few cores) or "processes" (no shared GIL:
    # for many cores and large crops, e.g. the paper scale on a GPU host; handvae.data.prefetch)
    c.data.worker_kind = "threads"
    c.data.cache_mb = 1024        # cache of prepared training examples (processes split it)
    # Training examples decoded once into memory-mapped files (handvae.data.decoded_cache),
    # shared by every run and worker; "" dir: beside the TFDS build. Falls back to cache_mb's
    # per-process cache when the disk lacks room.
    c.data.decoded_cache = False
    c.data.decoded_cache_dir = ""
    # Where the per-step work (warp, hue, heat maps, point sample) runs: "host" (numpy/Pillow
    # in the pipeline), "device" (in the jitted step on uint8 rows; needs decoded_cache) or
    # "auto": the device on GPU/TPU when decoded_cache is on, else the host (CPU measured
    # slower on the device; handvae.data.device_augment).
    c.data.augment_on = "auto"

    # Model: exactly the fields of handvae.models.HandVAE. Sizes shared with the data are
    # references to config.data's (one value; setting either side sets both).
    c.model = ml_collections.ConfigDict()
    c.model.strategy = "R2P"
    c.model.latent_dim = 64
    c.model.image_size = c.data.get_ref("image_size")
    c.model.num_points = c.data.get_ref("num_points")
    c.model.heatmap_size = c.data.get_ref("heatmap_size")
    c.model.resnet_width = 64      # channels of ResNet-18's first stage
    c.model.respel_width = 64      # hidden units of ResPEL (half of Li & Lee's 128)
    c.model.respel_blocks = 5      # ResPEL residual blocks
    c.model.heatmap_width = 1024   # DC-GAN generator: 4×4×1024, halved at each upsampling
    c.model.pose_hidden = 128
    c.model.folding_hidden = 512   # FoldingNet's folds: 3-layer MLPs of 512 units
    # S4's product of experts with the prior expert N(0, I) too (Sec. 3.2's text); False:
    # the two experts of Eqs. 5-6 (see WORKSPACE.md, decisions).
    c.model.poe_prior_expert = False
    # Initial bias of every encoder's log σ² layer (the paper is silent; 0 is flax's default,
    # σ ≈ 1 at the start). An ablation knob, see experiments/results/cpu/README.md.
    c.model.logvar_bias_init = 0.0
    # Layers compute in "float32" or "bfloat16" (parameters, optimiser state and the losses stay
    # float32; handvae.models.vae). The paper is silent on precision.
    c.model.compute_dtype = "float32"

    # Objective (Eqs. 1-4, 11): reconstruction weights, KL weights and the EMD's auction.
    c.loss = ml_collections.ConfigDict()
    c.loss.lambda_heat = 0.01
    c.loss.lambda_cloud = 1.0
    # KL weights: beta annealed beta_min → beta_max over beta_anneal_steps; beta' for S3.
    c.loss.beta_min = 1e-5
    c.loss.beta_max = 1e-3
    c.loss.beta_anneal_steps = 100_000
    c.loss.beta_anneal = "linear"    # "linear" in beta, or "log" (same factor every step)
    c.loss.beta_prime = 1.0
    # Every KL in nats summed ("sum") or averaged ("mean") over the latent dimensions. The
    # paper is silent; with "sum" S3 collapses at beta' = 1 (validation 52-54 mm, the constant
    # guess), with "mean" it learns (30.2 / 30.4 mm over two seeds), S1 is unchanged within seed
    # spread and S4 loses 0.45-0.85 mm of validation EPE (handvae.losses.objectives;
    # experiments/results/cpu/ablation_kl_reduction.json).
    c.loss.kl_reduction = "mean"
    # How a weak batch's unlabelled rows weigh (handvae.losses.objectives; the paper is silent):
    # "pooled" averages every cloud term and KL over all rows, "separate" adds the unlabelled
    # rows' mean to the labelled rows' whole supervised objective (Sec. 5.3 read literally).
    c.loss.unlabelled_weighting = "pooled"
    c.loss.emd_epsilon = 5e-3        # final auction ε, relative to each pair's cost scale
    c.loss.emd_max_iterations = 0    # bidding-round bound; 0: grows with B·N (always enough)
    c.loss.emd_variant = ""          # auction: "pooled" | "dense" | "pallas"; "": by backend

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
    # jax.profiler trace of steps "first,last" (inclusive) into <workdir>/profile; "" = off
    # (handvae.training.observability).
    c.profile_steps = ""
    return c


def parse_arg(arg: str | None, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Parses a config argument ``"key=value,key=value"`` (or a bare value) over ``defaults``.

    ``experiments/configs/s2.py:decoders=chp,dataset=stb`` gives ``arg="decoders=chp,dataset=stb"``.
    A bare value (``s4_poe.py:stb``) sets the first key of ``defaults``, and a bare name of a
    bool key sets it true (``s4_poe.py:stb,tiny``). Values are converted to the type of the
    default (bools from true/false/1/0).

    Raises:
      ValueError: for an unknown key (the message lists the known ones) or a bad value.
    """
    values = dict(defaults)
    if not arg:
        return values
    for i, item in enumerate(part for part in arg.split(",") if part):
        key, sep, value = item.partition("=")
        if not sep and isinstance(defaults.get(item.strip()), bool):
            key, sep, value = item.strip(), "=", "true"
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
            values[key] = _to_bool(value) if kind is bool else kind(value.strip())
        except ValueError:
            raise ValueError(f"config argument {arg!r}: {key}={value!r} is not a "
                             f"{kind.__name__}") from None
    return values


def _to_bool(text: str) -> bool:
    text = text.strip().lower()
    if text not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"{text!r} is not a bool (true/false)")
    return text in ("true", "1", "yes")


def shrink_to_tiny(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The ``tiny`` (runlocal) variant, in place: 32-px crops, 64 points, 8-px heat maps, tiny
    widths, batch 4 and 6 steps, for tests and a laptop smoke run. Returns ``config``.

    The data sizes are set once (``config.data``); the model follows through its references.
    """
    config.data.image_size = 32
    config.data.num_points = 64
    config.data.heatmap_size = 8
    config.data.num_workers = 1
    m = config.model
    m.latent_dim, m.resnet_width, m.respel_width, m.respel_blocks = 8, 4, 8, 2
    m.heatmap_width, m.pose_hidden, m.folding_hidden = 16, 16, 16
    config.loss.emd_epsilon = 1e-2
    config.loss.emd_max_iterations = 500
    config.loss.beta_anneal_steps = 4
    config.optimizer.lr = 1e-3
    config.optimizer.lr_boundaries = (4,)
    config.batch_size = 4
    config.num_train_steps = 6
    config.log_every = 2
    config.eval_every = 3
    config.checkpoint_every = 2
    config.keep_checkpoints = 2
    config.num_eval_examples = 8
    return config
