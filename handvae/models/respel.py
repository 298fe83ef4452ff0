"""ResPEL: residual permutation-equivariant layers (Li & Lee, CVPR 2019), the cloud trunk.

A permutation-equivariant layer (PEL, Zaheer et al. 2017 "Deep Sets", max-pooling variant)
maps every point's feature ``x_n`` to ``x_n Γ + (max_m x_m) Λ + b``: the same affine map per
point plus a term shared by the whole set, so permuting the input points permutes the output
rows. (The common ``(x_n − max x) Γ`` form is the special case Λ = −Γ; it would make the first
layer blind to where the cloud lies relative to the root joint, so the general form is used.)
Li & Lee stack such layers in pre-activation residual blocks; max-pooling the last layer over points
gives a permutation-invariant feature of the whole cloud.

Depth: an input PEL (3 → width) followed by ``num_blocks`` residual blocks of two PELs each
(11 PELs for the default 5 blocks), our reading of Li & Lee's feature extractor; Yang et al.
(ICCV 2019) use it with half of Li & Lee's 128 hidden units, i.e. ``width = 64``. The pooled
feature is layer-normalised (see :class:`ResPEL`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

DEFAULT_NUM_BLOCKS = 5


class PermutationEquivariantLayer(nn.Module):
    """``y_n = x_n Γ + (max_m x_m) Λ + b`` for every point n.

    Attributes:
      features: output channels.
      dtype: computation dtype (parameters stay float32).
    """

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """[B, N, C] → [B, N, features]; equivariant to permutations of the N axis."""
        per_point = nn.Dense(self.features, dtype=self.dtype, name="per_point")(x)
        shared = nn.Dense(self.features, use_bias=False, dtype=self.dtype, name="set_max")(
            jnp.max(x, axis=1, keepdims=True))
        return per_point + shared


class ResPELBlock(nn.Module):
    """Pre-activation residual block: ``x + PEL(relu(PEL(relu(x))))``."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """[B, N, features] → [B, N, features]."""
        y = PermutationEquivariantLayer(self.features, self.dtype)(nn.relu(x))
        y = PermutationEquivariantLayer(self.features, self.dtype)(nn.relu(y))
        return x + y


class ResPEL(nn.Module):
    """ResPEL trunk with max-pooling over points.

    Attributes:
      width: hidden units of every PEL (64 = half of Li & Lee's 128).
      num_blocks: residual blocks after the input layer.
      dtype: computation dtype (parameters stay float32); the pooled features are float32.
    """

    width: int = 64
    num_blocks: int = DEFAULT_NUM_BLOCKS
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, points: jax.Array) -> jax.Array:
        """Permutation-invariant cloud features.

        Args:
          points: [B, N, 3] point cloud (normalised units, see ``handvae.data.spec``).

        Returns:
          [B, width] layer-normalised float32 features, invariant to the order of the N
          points.
        """
        if points.ndim != 3 or points.shape[-1] != 3:
            raise ValueError(
                f"cloud must be [B, N, 3] (batch, points, xyz); got shape {points.shape}. "
                "Pass a batch of 3-D point clouds, e.g. batch['cloud'].")
        y = PermutationEquivariantLayer(self.width, self.dtype, name="input_pel")(points)
        for block in range(self.num_blocks):
            y = ResPELBlock(self.width, self.dtype, name=f"block{block + 1}")(y)
        # The pooled maximum grows with the cloud's extent and the depth (features of ~10 and
        # log-variances of ~20 at initialisation on hand-sized clouds); a LayerNorm keeps it
        # O(1) like the ResNet's BatchNorm does for the RGB features. Our addition, not in
        # Li & Lee; it is per example, so invariance to point order is kept.
        pooled = jnp.max(nn.relu(y), axis=1).astype(jnp.float32)
        return nn.LayerNorm(name="pooled_norm")(pooled)
