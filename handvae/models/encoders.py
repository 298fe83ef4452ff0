"""Encoders q(z | x) of the multi-modal VAE: RGB, point cloud, and the joint (RGB, cloud) one.

Each returns the mean and log-variance of a diagonal Gaussian over the ``latent_dim``-d
latent. The heads are two parallel dense layers on the pooled trunk features, one giving μ and
one giving log σ².

Mixed precision: ``dtype`` is the trunks' computation dtype (``jnp.bfloat16``); parameters
stay float32, the trunks return float32 features and the Gaussian heads compute in float32,
so μ and log σ² (which enter exp and the KL) are float32 whatever ``dtype``.

Decision (moved from WORKSPACE.md)

**Encoder heads start at flax's default init** (`model.logvar_bias_init = 0.0`, so σ ≈ 1
at the start). The paper is silent on initialisation. The field exists as an ablation
knob: the paper-size S1 on a GPU sat on the constant-guess plateau for 1,000–2,000 steps,
and a wide initial posterior is one candidate cause. At the cpu scale, −4 (σ ≈ 0.14)
changed nothing beyond seed spread (test 31.96 vs 32.21 mm;
`experiments/results/cpu/ablation_logvar_bias.json`), so the default stays flax's.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from typing import Any

from handvae.models.resnet import ResNet18
from handvae.models.respel import DEFAULT_NUM_BLOCKS, ResPEL


class GaussianHead(nn.Module):
    """Dense layers features → (μ, log σ²).

    Attributes:
      latent_dim: D.
      logvar_bias: initial bias of the log σ² layer (0: flax's default, σ ≈ 1 at the start;
        the paper is silent). An ablation knob: a negative value starts the posteriors narrow.
    """

    latent_dim: int
    logvar_bias: float = 0.0

    @nn.compact
    def __call__(self, features: jax.Array) -> tuple[jax.Array, jax.Array]:
        """[B, F] → (mu [B, D], logvar [B, D])."""
        mu = nn.Dense(self.latent_dim, name="mu")(features)
        logvar = nn.Dense(self.latent_dim, name="logvar",
                          bias_init=nn.initializers.constant(self.logvar_bias))(features)
        return mu, logvar


def check_rgb(rgb: jax.Array, image_size: int) -> None:
    """Raises a ValueError naming the expected shape unless ``rgb`` is [B, S, S, 3]."""
    if rgb.ndim != 4 or rgb.shape[-1] != 3 or tuple(rgb.shape[1:3]) != (image_size, image_size):
        raise ValueError(
            f"rgb must be [B, {image_size}, {image_size}, 3] (batch, height, width, RGB) for "
            f"image_size={image_size}; got shape {tuple(rgb.shape)}. Crop/resize the images "
            "to the model's image_size or set config.model.image_size to match the data.")


class RGBEncoder(nn.Module):
    """q_φR(z | x_R): ResNet-18 → global average pooling → (μ, log σ²).

    Attributes:
      latent_dim: D (64 in the paper).
      image_size: expected crop side S in pixels (256 in the paper).
      width: ResNet first-stage channels.
      logvar_bias: initial log σ² bias (:class:`GaussianHead`).
      dtype: the trunk's computation dtype.
    """

    latent_dim: int = 64
    image_size: int = 256
    width: int = 64
    logvar_bias: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, rgb: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        """[B, S, S, 3] normalised crops → (mu [B, D], logvar [B, D])."""
        check_rgb(rgb, self.image_size)
        features = ResNet18(self.width, self.dtype, name="trunk")(rgb, train=train)
        return GaussianHead(self.latent_dim, self.logvar_bias, name="head")(features)


class CloudEncoder(nn.Module):
    """q_φC(z | x_C): ResPEL → max-pool over points → (μ, log σ²); invariant to point order.

    Attributes:
      latent_dim: D.
      width: ResPEL hidden units.
      num_blocks: ResPEL residual blocks.
      logvar_bias: initial log σ² bias (:class:`GaussianHead`).
      dtype: the trunk's computation dtype.
    """

    latent_dim: int = 64
    width: int = 64
    num_blocks: int = DEFAULT_NUM_BLOCKS
    logvar_bias: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, cloud: jax.Array) -> tuple[jax.Array, jax.Array]:
        """[B, N, 3] cloud → (mu [B, D], logvar [B, D])."""
        features = ResPEL(self.width, self.num_blocks, self.dtype, name="trunk")(cloud)
        return GaussianHead(self.latent_dim, self.logvar_bias, name="head")(features)


class JointEncoder(nn.Module):
    """q_φRC(z | x_R, x_C) of S3: its own ResNet-18 and ResPEL trunks, fused features → head.

    The paper's Alg. 2 trains the joint encoder's parameters φ_RC separately from the RGB
    encoder's φ_R (the two are tied only through the KL term), so the trunks are not shared.
    The pooled features of the two modalities are concatenated before the Gaussian head.
    """

    latent_dim: int = 64
    image_size: int = 256
    resnet_width: int = 64
    respel_width: int = 64
    respel_blocks: int = DEFAULT_NUM_BLOCKS
    logvar_bias: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, rgb: jax.Array, cloud: jax.Array, *, train: bool
                 ) -> tuple[jax.Array, jax.Array]:
        """([B, S, S, 3], [B, N, 3]) → (mu [B, D], logvar [B, D])."""
        check_rgb(rgb, self.image_size)
        if cloud.shape[:1] != rgb.shape[:1]:
            raise ValueError(f"rgb and cloud must have the same batch size; got rgb "
                             f"{tuple(rgb.shape)} and cloud {tuple(cloud.shape)}")
        rgb_features = ResNet18(self.resnet_width, self.dtype, name="rgb_trunk")(rgb,
                                                                                 train=train)
        cloud_features = ResPEL(self.respel_width, self.respel_blocks, self.dtype,
                                name="cloud_trunk")(cloud)
        features = jnp.concatenate([rgb_features, cloud_features], axis=-1)
        return GaussianHead(self.latent_dim, self.logvar_bias, name="head")(features)
