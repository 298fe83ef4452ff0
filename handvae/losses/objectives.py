"""Per-strategy training objectives of Yang et al. (ICCV 2019): negative ELBOs to minimise.

Every decoded latent z_s (s ∈ {R, C, RC}, see :mod:`handvae.models.registry`) contributes a
negative ELBO through the shared decoders,

    L_s = pose_l2(P̂_s, P) + λ_heat · heatmap_l2(Ĥ_s, H)
          + λ_cloud · (chamfer(Ĉ_s, C) + emd(Ĉ_s, C)) + β · KL(q_s ‖ N(0, I)),

with only the terms of the strategy's decoders. Strategies combine them:

* ``R2P``, ``R2HP``, ``R2CP``, ``R2CHP`` (S1, S2 / Alg. 1): L_R.
* ``RC2CHP_kl`` (S3 / Alg. 2, Eq. 3): L_RC + L_R + β' · KL(q_RC ‖ q_R), z_RC from the joint
  encoder; the KL aligns the RGB posterior with the joint one (gradient reaches both).
* ``RC2CHP_poe`` (S4 / Alg. 3, Eq. 4): the reconstructions of z_R, z_C and
  z_RC ~ PoE(q_R, q_C) plus β · (KL(q_R ‖ N(0, I)) + KL(q_C ‖ N(0, I))); the product's KL is
  not added (it is fixed by its two experts).

Weak supervision: ``batch["labelled"]`` [B] (1/0). Pose and heat-map terms are averaged over
the labelled examples only (a zero count gives 0, not NaN); cloud terms over all examples.
An ELBO's KL is averaged over the examples it reconstructs something for: all of them when the
strategy decodes clouds, the labelled ones otherwise. So an unlabelled example contributes only
the RC2C terms (cloud reconstructions, their KLs and S3's alignment KL), and an all-unlabelled
batch leaves the pose and heat-map decoders with exactly zero gradient.

Terms are reported unweighted (means over their examples); ``loss`` is the weighted total.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from handvae.losses.chamfer import chamfer_distance
from handvae.losses.emd import earth_movers_distance
from handvae.losses.reconstruction import heatmap_l2, pose_l2
from handvae.models.registry import STRATEGIES, get_strategy
from handvae.ops.gaussian import gaussian_kl, kl_to_standard_normal

Array = jax.Array
Terms = dict[str, Array]
_TARGET_LETTER = {"pose": "P", "heatmaps": "H", "cloud": "C"}


class LossWeights(NamedTuple):
    """Weights of the objective (floats or scalar arrays, so β can follow a schedule).

    Attributes:
      lambda_heat: heat-map reconstruction weight λ_heat.
      lambda_cloud: point-cloud (Chamfer + EMD) weight λ_cloud.
      beta: KL-to-prior weight β (annealed by the trainer).
      beta_prime: S3's alignment weight β' on KL(q_RC ‖ q_R).
    """

    lambda_heat: float | Array
    lambda_cloud: float | Array
    beta: float | Array
    beta_prime: float | Array


def loss_weights_from_config(config: Any, beta: float | Array) -> LossWeights:
    """LossWeights from ``config.loss.lambda_*``, ``config.model.beta_prime`` and this β."""
    return LossWeights(lambda_heat=config.loss.lambda_heat,
                       lambda_cloud=config.loss.lambda_cloud,
                       beta=beta, beta_prime=config.model.beta_prime)


def _masked_mean(values: Array, mask: Array) -> Array:
    """Σ mask·values / max(Σ mask, 1): a mean over the flagged examples, 0 when none is."""
    return jnp.sum(jnp.where(mask > 0, values, 0.0)) / jnp.maximum(jnp.sum(mask), 1.0)


def _labels(batch: Mapping[str, Array], targets: tuple[str, ...]) -> tuple[Array, dict]:
    """The labelled mask [B] and the supervised targets with unlabelled rows zeroed.

    Unlabelled rows may hold anything (zeros, NaN); zeroing them keeps their (masked-out)
    losses finite, so no NaN leaks into gradients through the mask.
    """
    batch_size = batch["rgb"].shape[0]
    labelled = jnp.asarray(batch.get("labelled", jnp.ones((batch_size,))), jnp.float32)
    if labelled.shape != (batch_size,):
        raise ValueError(f"batch['labelled'] must be [B] = [{batch_size}]; got shape "
                         f"{tuple(labelled.shape)}")
    clean = {}
    for target in targets:
        if target == "cloud":
            continue
        if target not in batch:
            raise ValueError(f"the strategy decodes {target!r} but the batch has no "
                             f"{target!r} entry; see handvae.data.spec for the batch contract")
        values = jnp.asarray(batch[target])
        keep = (labelled > 0).reshape((-1,) + (1,) * (values.ndim - 1))
        clean[target] = jnp.where(keep & jnp.isfinite(values), values, 0.0)
    return labelled, clean


def _reconstruction_terms(recon: Mapping[str, Mapping[str, Array]], batch: Mapping[str, Array],
                          weights: LossWeights, targets: tuple[str, ...], *,
                          emd_epsilon: float, emd_max_iterations: int
                          ) -> tuple[Array, Terms]:
    """Weighted reconstruction loss of every source and its unweighted named terms."""
    labelled, clean = _labels(batch, targets)
    sources = tuple(recon)
    total = jnp.zeros((), jnp.float32)
    terms: Terms = {}
    for source in sources:
        if "pose" in targets:
            value = _masked_mean(pose_l2(recon[source]["pose"], clean["pose"]), labelled)
            terms[f"{source}2P"] = value
            total = total + value
        if "heatmaps" in targets:
            value = _masked_mean(heatmap_l2(recon[source]["heatmaps"], clean["heatmaps"]),
                                 labelled)
            terms[f"{source}2H"] = value
            total = total + weights.lambda_heat * value
    if "cloud" in targets:
        if "cloud" not in batch:
            raise ValueError("the strategy decodes 'cloud' but the batch has no 'cloud' entry")
        target = jnp.asarray(batch["cloud"])
        # All sources in one call: the auction is a single batched while-loop.
        predicted = jnp.concatenate([recon[s]["cloud"] for s in sources], axis=0)
        if predicted.shape[1:] != target.shape[1:]:
            raise ValueError(f"decoded clouds are {tuple(predicted.shape[1:])} per example but "
                             f"batch['cloud'] is {tuple(target.shape[1:])}; set "
                             "config.model.num_points = config.data.num_points")
        tiled = jnp.concatenate([target] * len(sources), axis=0)
        chamfer = jnp.split(chamfer_distance(predicted, tiled), len(sources))
        emd = jnp.split(earth_movers_distance(predicted, tiled, epsilon=emd_epsilon,
                                              max_iterations=emd_max_iterations),
                        len(sources))
        for source, cd, em in zip(sources, chamfer, emd):
            terms[f"{source}2C_chamfer"] = jnp.mean(cd)
            terms[f"{source}2C_emd"] = jnp.mean(em)
            total = total + weights.lambda_cloud * (jnp.mean(cd) + jnp.mean(em))
    return total, terms


def _prior_kl(latents: Mapping[str, Mapping[str, Array]], sources: tuple[str, ...],
              active: Array, weights: LossWeights) -> tuple[Array, Terms]:
    """β · Σ_s mean_active KL(q_s ‖ N(0, I)) and the unweighted terms ``kl_<s>``."""
    total = jnp.zeros((), jnp.float32)
    terms: Terms = {}
    for source in sources:
        value = _masked_mean(kl_to_standard_normal(latents[source]["mu"],
                                                   latents[source]["logvar"]), active)
        terms[f"kl_{source}"] = value
        total = total + weights.beta * value
    return total, terms


def _active(batch: Mapping[str, Array], targets: tuple[str, ...]) -> Array:
    """Examples an ELBO reconstructs something for: all if it decodes clouds, else labelled."""
    labelled, _ = _labels(batch, ())
    return jnp.ones_like(labelled) if "cloud" in targets else labelled


def _make_single_encoder_objective(strategy: str) -> Callable[..., tuple[Array, Terms]]:
    targets = get_strategy(strategy).targets

    def objective(outputs: Mapping[str, Any], batch: Mapping[str, Array], weights: LossWeights,
                  *, emd_epsilon: float, emd_max_iterations: int) -> tuple[Array, Terms]:
        recon, recon_terms = _reconstruction_terms(
            outputs["recon"], batch, weights, targets, emd_epsilon=emd_epsilon,
            emd_max_iterations=emd_max_iterations)
        kl, kl_terms = _prior_kl(outputs["latents"], ("R",), _active(batch, targets), weights)
        return recon + kl, {**recon_terms, **kl_terms}

    objective.__name__ = f"{strategy.lower()}_objective"
    objective.__doc__ = (f"{strategy} (Alg. 1): L_R with decoders {', '.join(targets)}. "
                         "(outputs, batch, weights) → (loss, terms).")
    return objective


r2p_objective = _make_single_encoder_objective("R2P")
r2hp_objective = _make_single_encoder_objective("R2HP")
r2cp_objective = _make_single_encoder_objective("R2CP")
r2chp_objective = _make_single_encoder_objective("R2CHP")


def rc2chp_kl_objective(outputs: Mapping[str, Any], batch: Mapping[str, Array],
                        weights: LossWeights, *, emd_epsilon: float, emd_max_iterations: int
                        ) -> tuple[Array, Terms]:
    """S3 (Alg. 2, Eq. 3): L_RC + L_R + β' · KL(q_RC ‖ q_R); term ``kl_RC_R``."""
    targets = get_strategy("RC2CHP_kl").targets
    recon, terms = _reconstruction_terms(outputs["recon"], batch, weights, targets,
                                         emd_epsilon=emd_epsilon,
                                         emd_max_iterations=emd_max_iterations)
    active = _active(batch, targets)
    kl, kl_terms = _prior_kl(outputs["latents"], ("RC", "R"), active, weights)
    joint, rgb = outputs["latents"]["RC"], outputs["latents"]["R"]
    align = _masked_mean(gaussian_kl(joint["mu"], joint["logvar"], rgb["mu"], rgb["logvar"]),
                         active)
    terms = {**terms, **kl_terms, "kl_RC_R": align}
    return recon + kl + weights.beta_prime * align, terms


def rc2chp_poe_objective(outputs: Mapping[str, Any], batch: Mapping[str, Array],
                         weights: LossWeights, *, emd_epsilon: float, emd_max_iterations: int
                         ) -> tuple[Array, Terms]:
    """S4 (Alg. 3, Eq. 4): reconstructions of z_R, z_C, z_RC = PoE + β(KL_R + KL_C)."""
    targets = get_strategy("RC2CHP_poe").targets
    recon, terms = _reconstruction_terms(outputs["recon"], batch, weights, targets,
                                         emd_epsilon=emd_epsilon,
                                         emd_max_iterations=emd_max_iterations)
    kl, kl_terms = _prior_kl(outputs["latents"], ("R", "C"), _active(batch, targets), weights)
    return recon + kl, {**terms, **kl_terms}


OBJECTIVES: dict[str, Callable[..., tuple[Array, Terms]]] = {
    "R2P": r2p_objective,
    "R2HP": r2hp_objective,
    "R2CP": r2cp_objective,
    "R2CHP": r2chp_objective,
    "RC2CHP_kl": rc2chp_kl_objective,
    "RC2CHP_poe": rc2chp_poe_objective,
}
assert tuple(OBJECTIVES) == STRATEGIES, "every registered strategy needs an objective"


def compute_loss(model: Any, params: Any, batch_stats: Any, batch: Mapping[str, Array],
                 rng: Array, weights: LossWeights, *, train: bool, emd_epsilon: float = 1e-3,
                 emd_max_iterations: int = 10_000
                 ) -> tuple[Array, tuple[Terms, Any]]:
    """The strategy's objective on one batch; differentiable w.r.t. ``params``.

    Args:
      model: a ``handvae.models.HandVAE``; ``model.strategy`` selects ``OBJECTIVES[...]``.
      params: the model's parameters.
      batch_stats: BatchNorm statistics.
      batch: a batch of the contract in ``handvae.data.spec`` (``rgb``; ``cloud`` when the
        strategy encodes or decodes clouds; ``pose``, ``heatmaps`` as decoded; ``labelled``).
      rng: PRNG key of the reparameterisation noise.
      weights: λ_heat, λ_cloud, β, β'.
      train: BatchNorm in training mode (batch statistics, updated ``batch_stats`` returned)
        or evaluation mode (running averages, ``batch_stats`` returned unchanged).
      emd_epsilon: final auction ε of the EMD (normalised units).
      emd_max_iterations: bound on the auction's bidding rounds.

    Returns:
      ``(loss, (terms, new_batch_stats))``: the scalar loss and a dict of named scalar terms
      (``R2P``, ``R2H``, ``R2C_chamfer``, ``R2C_emd``, ``kl_R``, ..., and ``loss``).
    """
    if model.strategy not in OBJECTIVES:
        raise ValueError(f"no objective for strategy {model.strategy!r}; known strategies: "
                         f"{', '.join(OBJECTIVES)}")
    spec = get_strategy(model.strategy)
    cloud = batch.get("cloud") if spec.uses_cloud_input else None
    if spec.uses_cloud_input and cloud is None:
        raise ValueError(f"strategy {model.strategy} needs batch['cloud'] [B, N, 3]")
    variables = {"params": params, "batch_stats": batch_stats}
    if train:
        outputs, mutated = model.apply(variables, batch["rgb"], cloud, rng, train=True,
                                       mutable=["batch_stats"])
        new_batch_stats = mutated["batch_stats"]
    else:
        outputs = model.apply(variables, batch["rgb"], cloud, rng, train=False)
        new_batch_stats = batch_stats
    loss, terms = OBJECTIVES[model.strategy](outputs, batch, weights, emd_epsilon=emd_epsilon,
                                             emd_max_iterations=emd_max_iterations)
    terms = {**terms, "loss": loss}
    return loss, (terms, new_batch_stats)
