"""The multi-modal VAE of Yang et al. (ICCV 2019), one module for every training strategy.

:class:`HandVAE` builds only the encoders and decoders its strategy uses (see
:mod:`handvae.models.registry`): the RGB encoder and pose decoder always; the heat-map and
FoldingNet decoders when the strategy decodes them; S3's joint encoder; S4's cloud encoder.
A forward pass encodes every source latent, samples it by the reparameterisation trick and
decodes all of them through the *shared* decoders in one batched call. The objectives live in
:mod:`handvae.losses.objectives`.

Whatever the strategy, inference is the RGB encoder's mean followed by the pose decoder
(:func:`predict_pose`), so a model trained with S3 or S4 costs the same at test time as S1.

Mixed precision (``compute_dtype = "bfloat16"``; the paper is silent on precision): every
convolution, dense layer and normalisation computes in bfloat16 while the parameters, the
BatchNorm statistics and hence the optimiser state stay float32 (flax's ``dtype`` vs
``param_dtype``). The trunks' pooled features, the Gaussian heads (μ, log σ²), the
reparameterisation, the product of experts and every decoder output are float32, so the
objective (``handvae.losses``) is computed in float32 from float32 inputs.

Example::

    model = build_model(config.model)
    variables = init_variables(model, jax.random.key(0), batch)
    pose = jax.jit(functools.partial(predict_pose, model))(variables, batch["rgb"])

Decisions (moved from WORKSPACE.md)

**S4's product of experts has no prior expert by default** (`model.poe_prior_expert =
False`). Sec. 3.2's text quotes the PoE identity q(z|x, w) ∝ p(z) q(z|x) q(z|w) from [26],
but then says "we arrive at q(z|x, w1) through a simple product of Gaussian experts,
q(z|x) and q(z|w1)" and Eqs. 5–6 give μ, Σ of the product of those two only; Eq. 4's KL is
on q_R and q_C only. So the default follows the equations; `True` multiplies in N(0, I)
(as Wu & Goodman's MVAE do), which shrinks the fused posterior towards 0.

**Mixed precision** (`config.model.compute_dtype`; the paper is silent on precision):
layers compute in bf16, parameters, BatchNorm statistics and Adam state stay f32, encoder
heads and decoder outputs are f32, so the losses run in f32. Default f32: on 2 cores bf16
is no faster (ratios 0.85–1.23× either way with the load, two interleaved runs), and at the
cpu scale it costs no measured accuracy (S1 validation 32.79 ± 1.49 vs 32.34 ± 0.24 mm, two
seeds, p = 0.74; S4 29.85 vs 30.71 ± 0.28, one bf16 seed;
`experiments/results/cpu/ablation_compute_dtype.json`); the GPU speed waits for a lease.
Frozen on resume (a `model.*` field).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from handvae.models.decoders import FoldingDecoder, HeatmapDecoder, PoseDecoder
from handvae.models.encoders import CloudEncoder, JointEncoder, RGBEncoder
from handvae.models.registry import STRATEGIES, StrategySpec, get_strategy
from handvae.models.respel import DEFAULT_NUM_BLOCKS
from handvae.ops.gaussian import product_of_experts, reparameterize

__all__ = ["COMPUTE_DTYPES", "HandVAE", "STRATEGIES", "build_model", "init_variables",
           "predict_pose", "encode_rgb", "decode_cloud", "interpolate_latents"]

COMPUTE_DTYPES = ("float32", "bfloat16")

Outputs = dict[str, dict[str, dict[str, jax.Array]]]
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


class HandVAE(nn.Module):
    """Strategy-aware multi-modal VAE (flax.linen; pure ``init``/``apply``).

    Attributes:
      strategy: a name in :data:`STRATEGIES`.
      latent_dim: D (64).
      image_size: RGB crop side S, pixels (256).
      resnet_width: ResNet-18 first-stage channels (64).
      respel_width: ResPEL hidden units (64).
      respel_blocks: ResPEL residual blocks (5).
      num_points: N, points of the decoded cloud (256).
      heatmap_size: Hm, side of the decoded heat maps (64).
      heatmap_width: channels of the heat-map decoder's first 4×4 map (1024, DC-GAN's
        generator; halved at each upsampling).
      pose_hidden: units of the pose decoder's 4 hidden layers (128).
      folding_hidden: units of the FoldingNet MLPs (512, FoldingNet's folds).
      poe_prior_expert: S4's product of experts also multiplies in the prior N(0, I)
        (Sec. 3.2's text, q ∝ p(z) q(z|x) q(z|w)); False: the two experts of Eqs. 5–6.
      logvar_bias_init: initial bias of every encoder's log σ² layer (0: flax's default, so
        σ ≈ 1 at the start; the paper is silent). An ablation knob, 0 in every config.
      compute_dtype: "float32" or "bfloat16": the layers' computation dtype (parameters and
        outputs stay float32; see the module docstring).
    """

    strategy: str = "R2P"
    latent_dim: int = 64
    image_size: int = 256
    resnet_width: int = 64
    respel_width: int = 64
    respel_blocks: int = DEFAULT_NUM_BLOCKS
    num_points: int = 256
    heatmap_size: int = 64
    heatmap_width: int = 1024
    pose_hidden: int = 128
    folding_hidden: int = 512
    poe_prior_expert: bool = False
    logvar_bias_init: float = 0.0
    compute_dtype: str = "float32"

    def setup(self) -> None:
        spec = get_strategy(self.strategy)
        bias = self.logvar_bias_init
        dtype = compute_dtype(self.compute_dtype)
        self.rgb_encoder = RGBEncoder(self.latent_dim, self.image_size, self.resnet_width, bias,
                                      dtype=dtype)
        if spec.fusion == "poe":
            self.cloud_encoder = CloudEncoder(self.latent_dim, self.respel_width,
                                              self.respel_blocks, bias, dtype=dtype)
        if spec.fusion == "kl":
            self.joint_encoder = JointEncoder(self.latent_dim, self.image_size,
                                              self.resnet_width, self.respel_width,
                                              self.respel_blocks, bias, dtype=dtype)
        self.pose_decoder = PoseDecoder(self.pose_hidden, dtype=dtype)
        if "heatmaps" in spec.targets:
            self.heatmap_decoder = HeatmapDecoder(self.heatmap_size, self.heatmap_width,
                                                  dtype=dtype)
        if "cloud" in spec.targets:
            self.cloud_decoder = FoldingDecoder(self.num_points, self.folding_hidden,
                                                dtype=dtype)

    # -- encoders -------------------------------------------------------------------------
    def encode_rgb(self, rgb: jax.Array, *, train: bool = False) -> tuple[jax.Array, jax.Array]:
        """q(z | x_R): [B, S, S, 3] → (mu [B, D], logvar [B, D])."""
        return self.rgb_encoder(rgb, train=train)

    def encode(self, rgb: jax.Array, cloud: jax.Array | None, *, train: bool
               ) -> dict[str, tuple[jax.Array, jax.Array]]:
        """Every posterior the strategy decodes or puts in a KL term (``spec.latents``):
        {"R" | "C" | "RC": (mu, logvar) [B, D]}."""
        spec = get_strategy(self.strategy)
        if spec.uses_cloud_input:
            if cloud is None:
                raise ValueError(f"strategy {self.strategy} encodes the point cloud; pass "
                                 "cloud [B, N, 3] (batch['cloud'])")
            if cloud.ndim != 3 or cloud.shape[-1] != 3:
                raise ValueError(f"cloud must be [B, N, 3] (batch, points, xyz); got shape "
                                 f"{tuple(cloud.shape)}")
        posteriors = {"R": self.rgb_encoder(rgb, train=train)}
        if spec.fusion == "kl":
            posteriors["RC"] = self.joint_encoder(rgb, cloud, train=train)
        elif spec.fusion == "poe":
            posteriors["C"] = self.cloud_encoder(cloud)
            mus = jnp.stack([posteriors["R"][0], posteriors["C"][0]])
            logvars = jnp.stack([posteriors["R"][1], posteriors["C"][1]])
            posteriors["RC"] = product_of_experts(mus, logvars,
                                                  prior_expert=self.poe_prior_expert)
        return {name: posteriors[name] for name in spec.latents}

    # -- decoders -------------------------------------------------------------------------
    def decode(self, z: jax.Array, *, train: bool) -> dict[str, jax.Array]:
        """Every decoder of the strategy on z [B, D]: {"pose": [B, 21, 3],
        "heatmaps": [B, Hm, Hm, 21], "cloud": [B, N, 3]} (those the strategy has)."""
        spec = get_strategy(self.strategy)
        outputs = {"pose": self.pose_decoder(z)}
        if "heatmaps" in spec.targets:
            outputs["heatmaps"] = self.heatmap_decoder(z, train=train)
        if "cloud" in spec.targets:
            outputs["cloud"] = self.cloud_decoder(z)
        return outputs

    def decode_cloud(self, z: jax.Array) -> jax.Array:
        """FoldingNet decoder: z [B, D] → [B, N, 3]."""
        spec = get_strategy(self.strategy)
        if not spec.decodes_cloud:
            having = [s for s in STRATEGIES if get_strategy(s).decodes_cloud]
            raise ValueError(f"strategy {self.strategy} has no point-cloud decoder; only "
                             f"{', '.join(having)} decode clouds")
        return self.cloud_decoder(z)

    def predict(self, rgb: jax.Array) -> jax.Array:
        """Test-time pose: RGB encoder mean → pose decoder; [B, S, S, 3] → [B, 21, 3]."""
        mu, _ = self.rgb_encoder(rgb, train=False)
        return self.pose_decoder(mu)

    # -- training forward pass ------------------------------------------------------------
    def __call__(self, rgb: jax.Array, cloud: jax.Array | None, rng: jax.Array, *,
                 train: bool) -> Outputs:
        """Encodes, samples and decodes every source latent of the strategy.

        Args:
          rgb: [B, S, S, 3] normalised crops.
          cloud: [B, N, 3] point clouds (only read by S3/S4; may be None otherwise).
          rng: PRNG key for the reparameterisation noise (one split per source).
          train: BatchNorm uses batch statistics (True; apply with
            ``mutable=["batch_stats"]``) or running averages (False).

        Returns:
          ``{"latents": {name: {"mu", "logvar"[, "z"]}}, "recon": {source: {target: x}}}``:
          latents for ``spec.latents`` (e.g. "R", "C", "RC"; "z" sampled for the decoded
          ``spec.sources``), every latent [B, D]; reconstructions of each source shaped as in
          :meth:`decode`.
        """
        posteriors = self.encode(rgb, cloud, train=train)
        sources = get_strategy(self.strategy).sources
        keys = jax.random.split(rng, len(sources))
        latents = {name: {"mu": mu, "logvar": logvar} for name, (mu, logvar) in posteriors.items()}
        for key, source in zip(keys, sources):
            mu, logvar = posteriors[source]
            latents[source]["z"] = reparameterize(key, mu, logvar)
        # One batched pass through the shared decoders (the BatchNorm of the heat-map decoder
        # then sees every latent it decodes in one set of statistics).
        z_all = jnp.concatenate([latents[s]["z"] for s in sources], axis=0)
        decoded = self.decode(z_all, train=train)
        recon = {s: {t: x for t, x in zip(decoded, chunk)}
                 for s, chunk in zip(sources, zip(*(jnp.split(x, len(sources))
                                                    for x in decoded.values())))}
        return {"latents": latents, "recon": recon}


def compute_dtype(name: str) -> jnp.dtype:
    """``config.model.compute_dtype`` → the dtype; ValueError naming the field otherwise."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"config.model.compute_dtype must be one of {COMPUTE_DTYPES}, got "
                         f"{name!r}")
    return jnp.dtype(name)


def _config_get(config: Any, name: str, default: Any) -> Any:
    if isinstance(config, Mapping) or hasattr(config, "get"):
        value = config.get(name, default)
    else:
        value = getattr(config, name, default)
    return default if value is None else value


def build_model(model_config: Any) -> HandVAE:
    """The model described by ``config.model`` (see ``experiments/configs/common.py``).

    Args:
      model_config: a ConfigDict (or mapping) with ``strategy``, ``latent_dim``,
        ``image_size``, ``resnet_width``, ``respel_width``, ``num_points``, ``heatmap_size``,
        ``pose_hidden``, ``folding_hidden``; optional ``respel_blocks`` (5),
        ``heatmap_width``, ``poe_prior_expert`` (False), ``logvar_bias_init`` (0.0) and
        ``compute_dtype`` ("float32"; a config saved before the field gets it). In
        the experiment configs the three sizes are references to ``config.data``'s (written
        once) and ``heatmap_width`` is 1024 (DC-GAN); a config without it (a work directory
        written before the field existed) gets the width those runs had, 4 · ``resnet_width``.

    Raises:
      ValueError: unknown strategy or compute dtype (the message lists the known names).
    """
    strategy = _config_get(model_config, "strategy", None)
    get_strategy(strategy)
    dtype_name = str(_config_get(model_config, "compute_dtype", "float32"))
    compute_dtype(dtype_name)
    fields = {name: default for name, default in (
        ("latent_dim", 64), ("image_size", 256), ("resnet_width", 64), ("respel_width", 64),
        ("respel_blocks", DEFAULT_NUM_BLOCKS), ("num_points", 256), ("heatmap_size", 64),
        ("pose_hidden", 128), ("folding_hidden", 512))}
    fields["heatmap_width"] = 4 * int(_config_get(model_config, "resnet_width", 64))
    return HandVAE(strategy=strategy,
                   **{name: int(_config_get(model_config, name, default))
                      for name, default in fields.items()},
                   poe_prior_expert=bool(_config_get(model_config, "poe_prior_expert", False)),
                   logvar_bias_init=float(_config_get(model_config, "logvar_bias_init", 0.0)),
                   compute_dtype=dtype_name)


def strategy_spec(model: HandVAE) -> StrategySpec:
    """The registry entry of ``model.strategy``."""
    return get_strategy(model.strategy)


def init_variables(model: HandVAE, rng: jax.Array, batch: Mapping[str, Any]) -> dict:
    """Initial ``{"params": ..., "batch_stats": ...}`` for a batch of the data contract.

    Only the shapes of ``batch["rgb"]`` and ``batch["cloud"]`` matter; the first example is
    used, so the batch size is free.
    """
    params_rng, sample_rng = jax.random.split(rng)
    rgb = jnp.asarray(batch["rgb"][:1])
    cloud = batch.get("cloud") if isinstance(batch, Mapping) else None
    cloud = None if cloud is None else jnp.asarray(cloud[:1])
    # init runs once, so on CPU a quick compile beats quick code (4× faster to compile).
    # compiler_options are refused on a nested jit (e.g. under jax.eval_shape when a
    # checkpoint's abstract train state is built): use them only at the top level.
    nested = isinstance(jnp.zeros(()) + 0, jax.core.Tracer)
    options = _FAST_COMPILE if jax.default_backend() == "cpu" and not nested else None
    init = jax.jit(functools.partial(model.init, train=False), compiler_options=options)
    variables = init({"params": params_rng}, rgb, cloud, sample_rng)
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def predict_pose(model: HandVAE, variables: Mapping[str, Any], rgb: jax.Array) -> jax.Array:
    """Pose from RGB: RGB encoder's mean → pose decoder (BatchNorm running averages).

    Pure and jittable (``jax.jit(functools.partial(predict_pose, model))``).

    Args:
      model: the HandVAE, any strategy.
      variables: ``{"params", "batch_stats"}``.
      rgb: [B, S, S, 3] normalised crops.

    Returns:
      [B, 21, 3] normalised root-relative pose (see ``handvae.data.spec``).
    """
    return model.apply(variables, rgb, method=HandVAE.predict)


def encode_rgb(model: HandVAE, variables: Mapping[str, Any], rgb: jax.Array
               ) -> tuple[jax.Array, jax.Array]:
    """q(z | x_R) at test time: [B, S, S, 3] → (mu [B, D], logvar [B, D])."""
    return model.apply(variables, rgb, method=HandVAE.encode_rgb)


def decode_cloud(model: HandVAE, variables: Mapping[str, Any], z: jax.Array) -> jax.Array:
    """FoldingNet decoding of latents: z [B, D] → [B, N, 3] (strategies with a cloud decoder)."""
    return model.apply(variables, z, method=HandVAE.decode_cloud)


def interpolate_latents(z0: jax.Array, z1: jax.Array, num: int) -> jax.Array:
    """``num`` evenly spaced points on the segment z0 → z1 (both ends included).

    Args:
      z0: [D] start latent.
      z1: [D] end latent.
      num: number of points, ≥ 2.

    Returns:
      [num, D]; row 0 is z0, row num − 1 is z1.
    """
    z0, z1 = jnp.asarray(z0), jnp.asarray(z1)
    if z0.ndim != 1 or z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must both be [D]; got {tuple(z0.shape)} and "
                         f"{tuple(z1.shape)}")
    if int(num) < 2:
        raise ValueError(f"num must be at least 2 (both end points); got {num}")
    t = jnp.linspace(0.0, 1.0, int(num), dtype=z0.dtype)[:, None]
    return (1.0 - t) * z0[None] + t * z1[None]
