"""A tiny model and objective with the interfaces of handvae.models.vae / losses.objectives.

Used by the training-layer unit tests so they exercise the loop (BatchNorm statistics, RNG,
loss terms) in well under a second per step, independent of the real model's size.
"""

from __future__ import annotations

from typing import Any, NamedTuple

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

    @nn.compact
    def __call__(self, rgb, *, train: bool):
        # No bias before BatchNorm: its gradient is exactly zero in theory, so Adam would turn
        # float noise into full-size steps and device-count comparisons into noise tests.
        x = nn.Conv(self.width, (3, 3), strides=(2, 2), use_bias=False)(rgb)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = jnp.mean(nn.relu(x), axis=(1, 2))
        mu, logvar = nn.Dense(2)(x), nn.Dense(2)(x)
        return nn.Dense(21 * 3)(mu).reshape(-1, 21, 3), mu, logvar


class Weights(NamedTuple):
    beta: Any
    scale: Any


def build_model(model_config: ml_collections.ConfigDict) -> TinyPoseNet:
    return TinyPoseNet(width=model_config.get("resnet_width", 4))


def init_variables(model, rng, batch):
    variables = model.init(rng, jnp.asarray(batch["rgb"][:1]), train=False)
    return {"params": variables["params"], "batch_stats": variables["batch_stats"]}


def loss_weights_from_config(config, beta):
    return Weights(beta=beta, scale=config.loss.lambda_cloud)


def compute_loss(model, params, batch_stats, batch, rng, weights, *, train, emd_epsilon,
                 emd_max_iterations):
    del emd_epsilon, emd_max_iterations
    (pose, mu, logvar), updates = model.apply(
        {"params": params, "batch_stats": batch_stats}, batch["rgb"], train=train,
        mutable=["batch_stats"])
    z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mu.shape)
    pose_term = jnp.mean(jnp.sum((pose - batch["pose"]) ** 2, -1) * batch["labelled"][:, None])
    kl = jnp.mean(0.5 * jnp.sum(jnp.exp(logvar) + mu ** 2 - 1.0 - logvar, -1))
    noise = 1e-3 * jnp.mean(z ** 2)
    loss = weights.scale * pose_term + weights.beta * kl + noise
    return loss, ({"pose": pose_term, "kl": kl}, updates["batch_stats"])


def predict_pose(model, variables, rgb):
    return model.apply(variables, rgb, train=False)[0]


FUNCTIONS = loop.ModelFunctions(build_model, init_variables, compute_loss,
                                loss_weights_from_config, predict_pose)


def tiny_config() -> ml_collections.ConfigDict:
    """A base config shrunk to 16-pixel crops, batch 4 and a handful of steps."""
    from experiments.configs import common
    config = common.get_base_config("synthetic")
    config.data.image_size = config.model.image_size = 16
    config.data.heatmap_size = config.model.heatmap_size = 4
    config.data.num_points = config.model.num_points = 8
    config.model.resnet_width = 4
    config.batch_size = 4
    config.num_train_steps = 6
    config.optimizer.lr = 1e-2
    config.optimizer.lr_boundaries = (4,)
    config.model.beta_anneal_steps = 4
    config.log_every = 2
    config.eval_every = 3
    config.checkpoint_every = 2
    config.keep_checkpoints = 2
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


def eval_batches(config: ml_collections.ConfigDict, num: int = 6):
    """A callable ``split -> finite eval stream`` (the same for every split); the last batch
    is smaller (``num`` examples)."""
    def make(split=None):
        del split
        batch = spec.dummy_batch(num, config.data.image_size, config.data.num_points,
                                 config.data.heatmap_size, seed=99)
        return [{k: v[:4] for k, v in batch.items()}, {k: v[4:] for k, v in batch.items()}]
    return make
