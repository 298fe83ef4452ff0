"""A tiny model and objective with the interfaces of handvae.models.vae / losses.objectives.

The model's ``__call__(rgb, cloud, rng, *, train)`` returns HandVAE's output structure
(``{"latents": {"R": ...}, "recon": {"R": {"pose": ...}}}``), so the real train step applies it;
the objective has ``negative_elbo``'s signature and reports the terms ``pose`` and ``kl``.

Used by the training-layer unit tests so they exercise the loop (BatchNorm statistics, RNG,
loss terms) in well under a second per step, independent of the real model's size.
"""

from __future__ import annotations

import zlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from handvae.data import spec
from handvae.training import loop


class TinyPoseNet(nn.Module):
    """RGB [B, S, S, 3] → pose [B, 21, 3] and a 2-D latent (mu, logvar), with BatchNorm."""

    width: int = 4

    def __call__(self, rgb, cloud, rng, *, train: bool):
        del cloud
        pose, mu, logvar = self.predict(rgb, train=train)
        z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mu.shape)
        return {"latents": {"R": {"mu": mu, "logvar": logvar, "z": z}},
                "recon": {"R": {"pose": pose}}}

    @nn.compact
    def predict(self, rgb, *, train: bool):
        # No bias before BatchNorm: its gradient is exactly zero in theory, so Adam would turn
        # float noise into full-size steps and device-count comparisons into noise tests.
        x = nn.Conv(self.width, (3, 3), strides=(2, 2), use_bias=False)(rgb)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = jnp.mean(nn.relu(x), axis=(1, 2))
        mu, logvar = nn.Dense(2)(x), nn.Dense(2)(x)
        return nn.Dense(21 * 3)(mu).reshape(-1, 21, 3), mu, logvar


def build_model(model_config: ml_collections.ConfigDict) -> TinyPoseNet:
    return TinyPoseNet(width=model_config.get("resnet_width", 4))


def init_variables(model, rng, batch):
    variables = model.init(rng, jnp.asarray(batch["rgb"][:1]), None, rng, train=False)
    return {"params": variables["params"], "batch_stats": variables["batch_stats"]}


def objective(spec, outputs, batch, weights, *, emd, kl_reduction="sum",
              unlabelled_weighting="pooled"):
    """A pose term, a KL and a small term of the sampled z (so the step's RNG matters)."""
    del spec, emd, kl_reduction, unlabelled_weighting
    latent, pose = outputs["latents"]["R"], outputs["recon"]["R"]["pose"]
    mu, logvar = latent["mu"], latent["logvar"]
    pose_term = jnp.mean(jnp.sum((pose - batch["pose"]) ** 2, -1) * batch["labelled"][:, None])
    kl = jnp.mean(0.5 * jnp.sum(jnp.exp(logvar) + mu ** 2 - 1.0 - logvar, -1))
    noise = 1e-3 * jnp.mean(latent["z"] ** 2)
    loss = weights.lambda_cloud * pose_term + weights.beta * kl + noise
    return loss, {"pose": pose_term, "kl": kl}


def predict_pose(model, variables, rgb):
    return model.apply(variables, rgb, train=False, method=TinyPoseNet.predict)[0]


FUNCTIONS = loop.ModelFunctions(build_model, init_variables, objective, predict_pose)


def tiny_config() -> ml_collections.ConfigDict:
    """The ``tiny`` config (batch 4, 6 steps, logs every 2, ...) with a fast learning rate."""
    from experiments.configs import common
    config = common.shrink_to_tiny(common.get_base_config("synthetic"))
    config.optimizer.lr = 1e-2
    return config


def batch_at(config: ml_collections.ConfigDict, step: int) -> dict[str, np.ndarray]:
    """Batch ``step`` of a stream that depends only on (seed, step), as the pipeline's does."""
    return spec.dummy_batch(config.batch_size, config.data.image_size, config.data.num_points,
                            config.data.heatmap_size, seed=1000 * config.seed + step)


def batches(config: ml_collections.ConfigDict):
    """``start_step -> iterator`` over :func:`batch_at`, for ``train_and_evaluate``."""
    def stream(start_step: int):
        step = start_step
        while True:
            yield batch_at(config, step)
            step += 1
    return stream


def split_seed(split: str | None) -> int:
    """The data seed of a split's stand-in frames: each split has frames of its own."""
    return 99 if split in (None, "validation") else 1 + zlib.crc32(split.encode()) % 997


def eval_batches(config: ml_collections.ConfigDict, num: int = 6):
    """A callable ``split -> finite eval stream``, different frames for every split (so a
    test can tell which split an evaluation read); the last batch is smaller (``num``
    examples)."""
    def make(split=None):
        batch = spec.dummy_batch(num, config.data.image_size, config.data.num_points,
                                 config.data.heatmap_size, seed=split_seed(split))
        return [{k: v[:4] for k, v in batch.items()}, {k: v[4:] for k, v in batch.items()}]
    return make
