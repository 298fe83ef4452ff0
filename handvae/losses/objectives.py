"""The one training objective of Yang et al. (ICCV 2019): a negative ELBO derived from a spec.

Every decoded latent z_s (``spec.sources``, s ∈ {R, C, RC}; see
:mod:`handvae.models.registry`) is reconstructed through the shared decoders of
``spec.targets`` (Eq. 11),

    L_recon,s = pose_l2(P̂_s, P) + λ_heat · heatmap_l2(Ĥ_s, H)
                + λ_cloud · (chamfer(Ĉ_s, C) + emd(Ĉ_s, C)),

and the KL terms are the record's: β · KL(q_s ‖ N(0, I)) for s in ``spec.prior_kl`` and
β' · KL(q_a ‖ q_b) for (a, b) in ``spec.alignment_kl`` (S3's alignment KL(q_RC ‖ q_R), Eq. 3:
the joint posterior first; both encoders get its gradient). So

* ``R2P``, ``R2HP``, ``R2CP``, ``R2CHP`` (S1, S2 / Alg. 1): L_R + β KL_R.
* ``RC2CHP_kl`` (S3 / Alg. 2, Eq. 3): L_RC + L_R + β (KL_RC + KL_R) + β' KL(q_RC ‖ q_R).
* ``RC2CHP_poe`` (S4 / Alg. 3, Eq. 4): L_R + L_C + L_RC + β (KL_R + KL_C); the product's KL is
  not added (it is fixed by its two experts).

This module holds functions of arrays only: the trainer (``handvae.training.step``) applies
the model and passes its outputs here.

Weak supervision: ``batch["labelled"]`` [B] (1/0). Pose and heat-map terms are averaged over
the labelled examples only (a zero count gives 0, not NaN); cloud terms over all examples.
The KL terms are averaged over the examples the ELBO reconstructs something for: all of them
when the strategy decodes clouds, the labelled ones otherwise. So an unlabelled example
contributes only the RC2C terms (cloud reconstructions, the KLs and S3's alignment KL), and an
all-unlabelled batch leaves the pose and heat-map decoders with exactly zero gradient.

**How the unlabelled rows weigh** (``unlabelled_weighting``, ``config.loss.
unlabelled_weighting``; the paper is silent). ``"pooled"`` averages each cloud term and KL over
all the rows of the batch, labelled and unlabelled together: with B labelled + B unlabelled rows
(``data.weak_batch = "added"``) the labelled rows' cloud terms and KLs weigh half what they do
in a supervised run. ``"separate"`` is Sec. 5.3 read literally ("besides fully supervised
training on m% data, we also train the 'RC2C' sub-parts with the rest"): the labelled rows'
whole supervised objective (each term averaged over the labelled rows) plus the unlabelled
rows' RC2C terms (averaged over the unlabelled rows). On a fully labelled batch the two are
the same objective.

Terms are reported unweighted (means over their examples; under ``"separate"`` the labelled
rows' mean plus the unlabelled rows' mean, the value the loss weighs); ``loss`` is the
weighted total.

**The KL's reduction over the latent dimensions** (``kl_reduction``, ``config.loss.
kl_reduction``) is a choice the paper leaves open: it gives the weights (β annealed 1e-5 →
1e-3, β' = 1, λ_heat 0.01, λ_cloud 1; Sec. 5) but neither the pose units nor how Eqs. 7–11 and
the KLs are reduced. ``"sum"`` is the Gaussian KL as written, nats summed over the D = 64
dimensions; ``"mean"`` divides every KL by D (nats per dimension, what a ``reduce_mean``
over the latent gives). The reconstructions are unchanged: poses in bone-length units
(``handvae.data.spec``), squared errors summed over joints and coordinates (Eq. 10). With
``"sum"``, S3's collapse (both posteriors at the prior, the constant-pose guess) is the
objective's optimum at β' = 1: an informative state costs ~26.6 of pose error plus ~70 nats
of alignment KL, the collapsed one ~66 of pose error and ~0 nats; with ``"mean"`` the same
informative state costs ~27.7. ``"mean"`` is the same objective as ``"sum"`` with β and β'
divided by D, so it is a reading of the paper's weights, not new weights. The experiment
configs default to ``"mean"``, chosen by validation EPE at the cpu scale (S3 learns at β' = 1,
validation 30.2 / 30.4 mm over two seeds, where ``"sum"`` stays at the constant guess's
52–54 mm; S1 equal within seed spread, S4 0.45–0.85 mm worse on validation;
``experiments/results/cpu/ablation_kl_reduction.json``).
This function's own default stays ``"sum"``, the KL as written, for users who call it
directly.

Decision (moved from WORKSPACE.md)

**Every KL is averaged over the latent dimensions** (issue 23; `loss.kl_reduction =
"mean"`). Sec. 5 gives the weights (β annealed 1e-5 → 1e-3, β' = 1, λ_heat 0.01,
λ_cloud 1) but is silent on the pose units and on how the reconstructions and KLs are
reduced. Poses are in bone-length units with squared errors summed over joints and
coordinates (Eq. 10); with every KL summed over the 64 dimensions, S3 collapsed at β' = 1
(both seeds at the constant guess, validation 52–54 mm), because the collapsed state was the
objective's optimum. Averaged, S3 learns (validation 30.24 / 30.38 mm, test 30.59 / 30.44,
two seeds) and S1 stays within seed spread (validation 32.51 vs 32.22 mm, seed 0).
`experiments/results/cpu/ablation_kl_reduction.json`; the objective's docstring has the
arithmetic. `"sum"` stays selectable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp

from handvae.losses.chamfer import chamfer_distance
from handvae.losses.emd import earth_movers_distance
from handvae.losses.reconstruction import heatmap_l2, pose_l2
from handvae.ops.gaussian import gaussian_kl, kl_to_standard_normal

if TYPE_CHECKING:
    # Annotation only: importing handvae.models at run time would pull flax and, through
    # handvae.data, TFDS and Pillow into `import handvae.losses` (the core install has none).
    from handvae.models.registry import StrategySpec

Array = jax.Array
Terms = dict[str, Array]
KL_REDUCTIONS = ("sum", "mean")
UNLABELLED_WEIGHTINGS = ("pooled", "separate")


class LossWeights(NamedTuple):
    """Weights of the objective (floats or scalar arrays, so β can follow a schedule).

    Attributes:
      lambda_heat: heat-map reconstruction weight λ_heat.
      lambda_cloud: point-cloud (Chamfer + EMD) weight λ_cloud.
      beta: KL-to-prior weight β (annealed by the trainer).
      beta_prime: alignment weight β' on ``spec.alignment_kl`` (S3's KL(q_RC ‖ q_R)).
    """

    lambda_heat: float | Array
    lambda_cloud: float | Array
    beta: float | Array
    beta_prime: float | Array


class EMDOptions(NamedTuple):
    """Options of the auction EMD (static: each value is one compilation).

    Attributes:
      epsilon: final auction ε, relative to each cloud pair's cost scale (the solve is within
        a factor 1 + ε of the optimum whatever the unit; ``earth_movers_distance``).
      max_iterations: bound on the auction's bidding rounds; None: the N-dependent default.
      variant: auction variant ("pooled", "dense", "pallas"); None: by backend
        (``handvae.losses.emd``).
    """

    epsilon: float = 5e-3
    max_iterations: int | None = None
    variant: str | None = None


def _masked_mean(values: Array, mask: Array) -> Array:
    """Σ mask·values / max(Σ mask, 1): a mean over the flagged examples, 0 when none is."""
    return jnp.sum(jnp.where(mask > 0, values, 0.0)) / jnp.maximum(jnp.sum(mask), 1.0)


def _row_mean(values: Array, labelled: Array, active: Array, weighting: str) -> Array:
    """A term [B] → scalar over the ``active`` rows, weighted as ``weighting`` says.

    ``"pooled"``: one mean over the active rows. ``"separate"``: the mean over the active
    labelled rows plus the mean over the active unlabelled rows (each 0 when it has no row).
    """
    if weighting == "pooled":
        return _masked_mean(values, active)
    return (_masked_mean(values, active * labelled)
            + _masked_mean(values, active * (1.0 - labelled)))


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


def cloud_distances(pred: Array, target: Array, emd: EMDOptions
                    ) -> tuple[Array, Array, Array]:
    """Chamfer and EMD of [B, N, 3] clouds: (chamfer [B], emd [B], converged [B] bool).

    The one place the EMD is called; ``converged`` is False where the auction hit its round
    bound (its distance is then an upper bound), reported as ``emd_unconverged_fraction``.
    """
    chamfer = chamfer_distance(pred, target)
    distance, converged = earth_movers_distance(
        pred, target, epsilon=emd.epsilon, max_iterations=emd.max_iterations,
        variant=emd.variant, return_converged=True)
    return chamfer, distance, converged


def _reconstruction_terms(recon: Mapping[str, Mapping[str, Array]], batch: Mapping[str, Array],
                          weights: LossWeights, spec: StrategySpec, emd: EMDOptions,
                          weighting: str) -> tuple[Array, Terms]:
    """Weighted reconstruction loss of every source and its unweighted named terms."""
    targets, sources = spec.targets, spec.sources
    labelled, clean = _labels(batch, targets)
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
                             f"batch['cloud'] is {tuple(target.shape[1:])}; the model's "
                             "num_points must equal config.data.num_points")
        tiled = jnp.concatenate([target] * len(sources), axis=0)
        chamfer, distance, converged = cloud_distances(predicted, tiled, emd)
        every = jnp.ones_like(labelled)
        for source, cd, em in zip(sources, jnp.split(chamfer, len(sources)),
                                  jnp.split(distance, len(sources))):
            cd = _row_mean(cd, labelled, every, weighting)
            em = _row_mean(em, labelled, every, weighting)
            terms[f"{source}2C_chamfer"] = cd
            terms[f"{source}2C_emd"] = em
            total = total + weights.lambda_cloud * (cd + em)
        # A diagnostic, not part of the loss: the share of solves cut off by the round bound.
        terms["emd_unconverged_fraction"] = 1.0 - jnp.mean(converged.astype(jnp.float32))
    return total, terms


def check_kl_reduction(kl_reduction: str) -> str:
    """``kl_reduction`` if it is one of :data:`KL_REDUCTIONS`; ValueError naming the field."""
    if kl_reduction not in KL_REDUCTIONS:
        raise ValueError(f"config.loss.kl_reduction must be one of {KL_REDUCTIONS}, got "
                         f"{kl_reduction!r}")
    return kl_reduction


def check_unlabelled_weighting(weighting: str) -> str:
    """``weighting`` if it is one of :data:`UNLABELLED_WEIGHTINGS`; ValueError naming the field."""
    if weighting not in UNLABELLED_WEIGHTINGS:
        raise ValueError(f"config.loss.unlabelled_weighting must be one of "
                         f"{UNLABELLED_WEIGHTINGS}, got {weighting!r}")
    return weighting


def _kl_terms(latents: Mapping[str, Mapping[str, Array]], spec: StrategySpec, labelled: Array,
              active: Array, weights: LossWeights, kl_reduction: str, weighting: str
              ) -> tuple[Array, Terms]:
    """β Σ_s KL(q_s ‖ N(0, I)) + β' Σ_(a,b) KL(q_a ‖ q_b) over the ``active`` examples.

    Each KL [B] is in nats (``"sum"``) or nats per latent dimension (``"mean"``).
    """
    total = jnp.zeros((), jnp.float32)
    terms: Terms = {}

    def reduce(kl: Array, mu: Array) -> Array:
        return kl / mu.shape[-1] if kl_reduction == "mean" else kl

    for name in spec.prior_kl:
        mu, logvar = latents[name]["mu"], latents[name]["logvar"]
        value = _row_mean(reduce(kl_to_standard_normal(mu, logvar), mu), labelled, active,
                          weighting)
        terms[f"kl_{name}"] = value
        total = total + weights.beta * value
    for a, b in spec.alignment_kl:
        mu = latents[a]["mu"]
        value = _row_mean(reduce(gaussian_kl(mu, latents[a]["logvar"], latents[b]["mu"],
                                             latents[b]["logvar"]), mu), labelled, active,
                          weighting)
        terms[f"kl_{a}_{b}"] = value
        total = total + weights.beta_prime * value
    return total, terms


def negative_elbo(spec: StrategySpec, outputs: Mapping[str, Any], batch: Mapping[str, Array],
                  weights: LossWeights, *, emd: EMDOptions = EMDOptions(),
                  kl_reduction: str = "sum", unlabelled_weighting: str = "pooled"
                  ) -> tuple[Array, Terms]:
    """The strategy's negative ELBO on one batch of model outputs (module docstring).

    Args:
      spec: the strategy record (``handvae.models.registry.get_strategy(name)``).
      outputs: the model's forward pass, ``{"latents": {name: {"mu", "logvar"}},
        "recon": {source: {target: array}}}`` (``handvae.models.HandVAE.__call__``).
      batch: a batch of the contract in ``handvae.data.spec`` (``rgb``; ``pose``,
        ``heatmaps`` and ``cloud`` as decoded; optional ``labelled`` [B]).
      weights: λ_heat, λ_cloud, β, β'.
      emd: auction options of the EMD term.
      kl_reduction: ``"sum"`` (nats over the latent dimensions) or ``"mean"`` (nats per
        dimension) for every KL term (module docstring).
      unlabelled_weighting: ``"pooled"`` (cloud terms and KLs averaged over all rows) or
        ``"separate"`` (labelled rows' mean plus unlabelled rows' mean; module docstring).

    Returns:
      ``(loss, terms)``: the scalar loss and a dict of named unweighted scalar terms
      (``R2P``, ``R2H``, ``R2C_chamfer``, ``R2C_emd``, ``kl_R``, ``kl_RC_R``, ..., and
      ``loss``; ``emd_unconverged_fraction`` where the EMD reports convergence).
    """
    weighting = check_unlabelled_weighting(unlabelled_weighting)
    recon, terms = _reconstruction_terms(outputs["recon"], batch, weights, spec, emd, weighting)
    labelled, _ = _labels(batch, ())
    active = jnp.ones_like(labelled) if spec.decodes_cloud else labelled
    kl, kl_terms = _kl_terms(outputs["latents"], spec, labelled, active, weights,
                             check_kl_reduction(kl_reduction), weighting)
    loss = recon + kl
    return loss, {**terms, **kl_terms, "loss": loss}
