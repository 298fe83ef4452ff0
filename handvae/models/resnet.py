"""ResNet-18 trunk (He et al., CVPR 2016) in flax.linen, the RGB encoder's feature extractor.

BasicBlocks with BatchNorm, stage sizes [2, 2, 2, 2], channels ``width · (1, 2, 4, 8)``; the
ImageNet stem (7×7 stride-2 convolution, 3×3 stride-2 max-pool) and global average pooling.
At ``width=64`` the trunk has 11,176,512 parameters (torchvision's ``resnet18`` without its
final classifier). ``width`` and the input size are free so a CPU demo can shrink them.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

STAGE_SIZES = (2, 2, 2, 2)


def _batch_norm(train: bool, **kwargs) -> nn.BatchNorm:
    # Statistics are reduced in float32 whatever ``dtype`` (flax's force_float32_reductions).
    # torch-style momentum (running ← 0.9·running + 0.1·batch) and epsilon.
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, **kwargs)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection (projection when the shape changes).

    Attributes:
      features: output channels.
      strides: stride of the first convolution (2 halves the spatial size).
      dtype: computation dtype (parameters stay float32).
    """

    features: int
    strides: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """[B, H, W, C] → [B, H / strides, W / strides, features]."""
        norm = functools.partial(_batch_norm, train, dtype=self.dtype)
        conv = functools.partial(nn.Conv, use_bias=False, padding=((1, 1), (1, 1)),
                                 dtype=self.dtype)
        y = conv(self.features, (3, 3), strides=(self.strides, self.strides))(x)
        y = nn.relu(norm()(y))
        y = conv(self.features, (3, 3))(y)
        y = norm()(y)
        residual = x
        if residual.shape != y.shape:
            residual = nn.Conv(self.features, (1, 1), strides=(self.strides, self.strides),
                               use_bias=False, dtype=self.dtype, name="projection_conv")(x)
            residual = norm(name="projection_norm")(residual)
        return nn.relu(residual + y)


class ResNet18(nn.Module):
    """ResNet-18 feature extractor with global average pooling.

    Attributes:
      width: channels of the first stage (64 in the paper); later stages double it.
      dtype: computation dtype (``jnp.bfloat16`` for mixed precision); parameters stay
        float32 and the pooled features are returned in float32.
    """

    width: int = 64
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Image features.

        Args:
          x: [B, H, W, C] images (any H, W ≥ 32 keeps every stage non-empty).
          train: batch statistics (True) or running averages (False) in BatchNorm.

        Returns:
          [B, 8 · width] globally average-pooled features, float32.
        """
        y = nn.Conv(self.width, (7, 7), strides=(2, 2), padding=((3, 3), (3, 3)),
                    use_bias=False, dtype=self.dtype, name="stem_conv")(x)
        y = nn.relu(_batch_norm(train, dtype=self.dtype, name="stem_norm")(y))
        y = nn.max_pool(y, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for stage, num_blocks in enumerate(STAGE_SIZES):
            for block in range(num_blocks):
                strides = 2 if stage > 0 and block == 0 else 1
                y = BasicBlock(self.width * 2**stage, strides, self.dtype,
                               name=f"stage{stage + 1}_block{block + 1}")(y, train=train)
        return jnp.mean(y.astype(jnp.float32), axis=(1, 2))
