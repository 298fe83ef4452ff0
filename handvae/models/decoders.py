"""Decoders p(x | z) shared by every encoder: 3-D pose, 2-D heat maps, point cloud.

* :class:`PoseDecoder`: 4 dense layers of 128 units (ReLU) and a linear output → [21, 3].
* :class:`HeatmapDecoder`: DC-GAN generator (Radford et al. 2016): a dense layer to a 4×4 map
  of 1024 channels (DC-GAN's width), then 4×4 stride-2 transposed convolutions with BatchNorm
  and ReLU, halving the channels at each doubling (1024 → 512 → 256 → 128 for 64² maps, as in
  DC-GAN's generator), the last one giving the 21 maps → [Hm, Hm, 21], Hm = 4 · 2^k.
* :class:`FoldingDecoder`: FoldingNet (Yang et al., CVPR 2018): a fixed 2-D grid of N points,
  shared by every example and not a parameter, folded twice by 3-layer MLPs of 512 units
  (FoldingNet's folds) conditioned on z → [N, 3].

Mixed precision: ``dtype`` is every decoder's computation dtype (``jnp.bfloat16``); the
parameters stay float32 and every decoder returns float32, so the losses are computed in
float32.

Decision (moved from WORKSPACE.md)

**Decoder widths from the references** (the paper: "we follow the decoder architecture of
the DC-GAN [18]" and "we follow the FoldingNet architecture [28]", no widths given). The
heat-map decoder is DC-GAN's generator: a projection to 4×4×1024, channels halved at each
stride-2 upsampling (1024→512→256→128 and the 21 maps for 64²), `model.heatmap_width =
1024`; FoldingNet's folds are 3-layer perceptrons of 512 units, `model.folding_hidden =
512` (FoldingNet, Sec. 2.2). Before, 256 and 256. The demo is the `cpu` scale (64, 128).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from handvae.data.spec import NUM_JOINTS


def _check_latent(z: jax.Array, latent_dim: int | None = None) -> None:
    if z.ndim != 2 or (latent_dim is not None and z.shape[-1] != latent_dim):
        expected = f"[B, {latent_dim}]" if latent_dim is not None else "[B, D]"
        raise ValueError(f"z must be {expected} (batch, latent); got shape {tuple(z.shape)}")


class PoseDecoder(nn.Module):
    """z [B, D] → normalised root-relative 3-D pose [B, 21, 3]."""

    hidden: int = 128
    num_layers: int = 4
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        """[B, D] → [B, 21, 3] float32 (units of ``batch['pose']``)."""
        _check_latent(z)
        y = z
        for layer in range(self.num_layers):
            y = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name=f"hidden{layer + 1}")(y))
        y = nn.Dense(NUM_JOINTS * 3, dtype=self.dtype, name="output")(y)
        return y.astype(jnp.float32).reshape(z.shape[0], NUM_JOINTS, 3)


def heatmap_upsamplings(heatmap_size: int) -> int:
    """Number k of stride-2 upsamplings from 4×4 to ``heatmap_size`` = 4 · 2^k (k ≥ 1)."""
    k = int(round(math.log2(max(heatmap_size, 1) / 4)))
    if heatmap_size < 8 or 4 * 2**k != heatmap_size:
        raise ValueError(f"heatmap_size must be 4·2^k with k ≥ 1 (8, 16, 32, 64, ...); got "
                         f"{heatmap_size}. Set config.model.heatmap_size accordingly.")
    return k


class HeatmapDecoder(nn.Module):
    """DC-GAN-style generator z [B, D] → 21 keypoint heat maps [B, Hm, Hm, 21].

    Attributes:
      heatmap_size: Hm (64 in the paper), a power-of-two multiple of 4.
      width: channels of the first 4×4 map (1024 in DC-GAN's generator); halved at every
        upsampling (at least 8).
      dtype: computation dtype (parameters stay float32; the maps are returned float32).
    """

    heatmap_size: int = 64
    width: int = 1024
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, *, train: bool) -> jax.Array:
        """[B, D] → [B, Hm, Hm, 21] heat maps (linear output, targets in [0, 1])."""
        _check_latent(z)
        num_upsamplings = heatmap_upsamplings(self.heatmap_size)
        norm = lambda name: nn.BatchNorm(  # noqa: E731
            use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
            name=name)
        y = nn.Dense(4 * 4 * self.width, dtype=self.dtype, name="project")(z).reshape(
            -1, 4, 4, self.width)
        y = nn.relu(norm("project_norm")(y))
        channels = self.width
        for layer in range(num_upsamplings - 1):
            channels = max(channels // 2, 8)
            y = nn.ConvTranspose(channels, (4, 4), strides=(2, 2), padding="SAME",
                                 use_bias=False, dtype=self.dtype, name=f"deconv{layer + 1}")(y)
            y = nn.relu(norm(f"deconv{layer + 1}_norm")(y))
        return nn.ConvTranspose(NUM_JOINTS, (4, 4), strides=(2, 2), padding="SAME",
                                dtype=self.dtype, name="output")(y).astype(jnp.float32)


def grid_shape(num_points: int) -> tuple[int, int]:
    """(rows, cols) of the folding grid: the most square factorisation of ``num_points``."""
    if num_points < 1:
        raise ValueError(f"num_points must be positive; got {num_points}")
    rows = max(r for r in range(1, int(math.isqrt(num_points)) + 1) if num_points % r == 0)
    return rows, num_points // rows


def folding_grid(num_points: int) -> np.ndarray:
    """The fixed 2-D grid FoldingNet folds: [N, 2] points evenly spaced in [-1, 1]².

    16×16 for N = 256, 8×8 for N = 64; rows × cols = N for any N (most square factorisation).
    A constant of the architecture, identical for every example and never trained.
    """
    rows, cols = grid_shape(num_points)
    u, v = np.meshgrid(np.linspace(-1.0, 1.0, rows), np.linspace(-1.0, 1.0, cols),
                       indexing="ij")
    return np.stack([u.ravel(), v.ravel()], axis=-1).astype(np.float32)


class FoldingMLP(nn.Module):
    """Per-point MLP on [z, point]: Dense(h)→ReLU→Dense(h)→ReLU→Dense(3).

    The first layer on the concatenation [z, p] is written as ``z A + p B`` so z is projected
    once per example rather than once per point (the same function, cheaper).
    """

    hidden: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, points: jax.Array) -> jax.Array:
        """z [B, D], points [B or 1, N, P] → [B, N, 3] (in ``dtype``)."""
        dense = functools.partial(nn.Dense, dtype=self.dtype)
        y = (dense(self.hidden, name="latent")(z)[:, None, :]
             + dense(self.hidden, use_bias=False, name="point")(points))
        y = nn.relu(y)
        y = nn.relu(dense(self.hidden, name="hidden")(y))
        return dense(3, name="output")(y)


class FoldingDecoder(nn.Module):
    """FoldingNet decoder z [B, D] → point cloud [B, N, 3].

    Attributes:
      num_points: N, the size of the fixed grid (256 in the paper).
      hidden: units of the folding MLPs (512 in FoldingNet).
      dtype: computation dtype (parameters stay float32; the cloud is returned float32).
    """

    num_points: int = 256
    hidden: int = 512
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        """[B, D] → [B, N, 3] float32 (units of ``batch['cloud']``)."""
        _check_latent(z)
        grid = jnp.asarray(folding_grid(self.num_points))[None]  # [1, N, 2], a constant
        first = FoldingMLP(self.hidden, self.dtype, name="fold1")(z, grid)
        return FoldingMLP(self.hidden, self.dtype, name="fold2")(z, first).astype(jnp.float32)
