"""Jitted training and evaluation steps on the ``("data",)`` mesh.

The step's shape (as in flax's ``examples/imagenet/train.py``)::

    config ──step_options_from_config (once, outside jit)──▶ StepOptions
        (strategy record, λ_heat, λ_cloud, β', EMD options, optax β and lr schedules)
    train_step(state, batch):
        rng     = fold_in(state.rng, state.step)
        weights = options.loss_weights(state.step)               # β from its schedule
        outputs, batch_stats = state.apply_fn(variables, rgb, cloud, rng, train=True,
                                              mutable=["batch_stats"])   # the model, here
        loss, terms = negative_elbo(spec, outputs, batch, weights, emd=...)  # pure arrays
        state = state.apply_gradients(grads=∇loss, batch_stats=batch_stats)

``make_train_step`` jits it: the incoming state is donated, the batch is split along axis 0
and the state is returned replicated. A step's noise depends only on the seed and the step
number, so a resumed run draws exactly what an uninterrupted one would. No ConfigDict reaches
the jitted function.

Decision (moved from WORKSPACE.md)

**The trainer applies the model; the config is resolved once** (issue 11). The train step
is flax's `TrainState` (+ `batch_stats`, `rng`) with `apply_fn = model.apply`; the config
becomes `StepOptions` (record, weights, EMD options, optax schedules) before `jit`. β is
`optax.linear_schedule` ("linear") or `optax.exponential_decay` bounded at β_max ("log");
β(0) of the linear ramp differs from the old hand-written one by float32 rounding only
(relative 8e-6). β fields moved from `config.model` to `config.loss`
(`--config.loss.beta_max=...`); crop, point and heat-map sizes live in `config.data`, and
`config.model`'s are `get_ref`s to them.

The train step's shape (moved from WORKSPACE.md)

With the train state and metrics (as WORKSPACE.md drew it)::

    config ──step.step_options_from_config (once, outside jit)──▶ StepOptions
       spec (StrategySpec) · λ_heat · λ_cloud · β' · EMDOptions · optax β and lr schedules
    state = state.create_train_state(config, model)   # flax TrainState + batch_stats + rng;
                                                      # apply_fn = model.apply, tx = Adam(lr sched.)
    train_step(state, batch, *, options, objective_fn=negative_elbo):        # jitted, donated
       rng = fold_in(state.rng, state.step); weights = options.loss_weights(state.step)
       outputs, batch_stats = state.apply_fn(vars, rgb, cloud, rng, train=True,
                                             mutable=["batch_stats"])  # step.apply_and_loss
       loss, terms = negative_elbo(spec, outputs, batch, weights, emd=options.emd)  # arrays only
       state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
       metrics = terms + beta + learning_rate + grad_norm
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from handvae.losses.emd import VARIANTS as EMD_VARIANTS
from handvae.losses.objectives import (EMDOptions, LossWeights, check_kl_reduction,
                                       check_unlabelled_weighting, negative_elbo)
from handvae.models import vae
from handvae.models.registry import StrategySpec, get_strategy
from handvae.training import schedules, sharding
from handvae.training.state import TrainState

Metrics = dict[str, jax.Array]
# (spec, outputs, batch, weights, *, emd, kl_reduction, unlabelled_weighting) -> (loss, terms);
# default negative_elbo.
ObjectiveFn = Callable[..., tuple[jax.Array, Metrics]]
# (raw batch, step) -> batch of the contract; traced inside the jitted step.
PrepareBatchFn = Callable[[dict[str, jax.Array], jax.Array], dict[str, jax.Array]]


class StepOptions(NamedTuple):
    """Everything the train step reads from the config, resolved once outside ``jit``.

    Attributes:
      spec: the strategy record (which latents, decoders and KL terms).
      lambda_heat: heat-map weight λ_heat (``config.loss.lambda_heat``).
      lambda_cloud: point-cloud weight λ_cloud (``config.loss.lambda_cloud``).
      beta_prime: alignment weight β' (``config.loss.beta_prime``).
      emd: auction options (``config.loss.emd_epsilon``, ``emd_max_iterations``,
        ``emd_variant``).
      kl_reduction: ``config.loss.kl_reduction`` ("sum" or "mean" over the latent
        dimensions; ``handvae.losses.objectives``).
      beta: optax schedule step → β (``config.loss.beta_*``).
      learning_rate: optax schedule step → learning rate (``config.optimizer``), the one the
        state's optimiser was built with; reported as a metric.
      unlabelled_weighting: ``config.loss.unlabelled_weighting`` ("pooled" or "separate": how
        a weak batch's unlabelled rows weigh; ``handvae.losses.objectives``).
    """

    spec: StrategySpec
    lambda_heat: float
    lambda_cloud: float
    beta_prime: float
    emd: EMDOptions
    kl_reduction: str
    beta: optax.Schedule
    learning_rate: optax.Schedule
    unlabelled_weighting: str = "pooled"

    def loss_weights(self, step: jax.Array) -> LossWeights:
        """The objective's weights at ``step`` (β from its schedule)."""
        return LossWeights(lambda_heat=self.lambda_heat, lambda_cloud=self.lambda_cloud,
                           beta=jnp.asarray(self.beta(step), jnp.float32),
                           beta_prime=self.beta_prime)


def step_options_from_config(config: ml_collections.ConfigDict) -> StepOptions:
    """Reads ``config.model.strategy``, ``config.loss`` and ``config.optimizer`` once."""
    loss = config.loss
    variant = loss.get("emd_variant") or None   # absent in configs saved before the field
    if variant is not None and variant not in EMD_VARIANTS:
        raise ValueError(f"config.loss.emd_variant must be one of {EMD_VARIANTS} or \"\" (by "
                         f"backend), got {variant!r}")
    return StepOptions(
        spec=get_strategy(config.model.strategy),
        lambda_heat=float(loss.lambda_heat), lambda_cloud=float(loss.lambda_cloud),
        beta_prime=float(loss.beta_prime),
        emd=EMDOptions(epsilon=float(loss.emd_epsilon),
                       max_iterations=int(loss.emd_max_iterations) or None,
                       variant=variant),
        # absent in configs saved before the field: those runs summed the KLs
        kl_reduction=check_kl_reduction(str(loss.get("kl_reduction", "sum"))),
        beta=schedules.beta_schedule_from_config(config),
        learning_rate=schedules.learning_rate_from_config(config),
        # absent in configs saved before the field: those runs pooled every row
        unlabelled_weighting=check_unlabelled_weighting(
            str(loss.get("unlabelled_weighting", "pooled"))))


def apply_and_loss(apply_fn: Callable[..., Any], params: Any, batch_stats: Any,
                   batch: Mapping[str, jax.Array], rng: jax.Array, weights: LossWeights, *,
                   spec: StrategySpec, emd: EMDOptions = EMDOptions(), train: bool,
                   kl_reduction: str = "sum", unlabelled_weighting: str = "pooled",
                   objective_fn: ObjectiveFn = negative_elbo
                   ) -> tuple[jax.Array, tuple[Metrics, Any]]:
    """Applies the model to ``batch`` and scores it; differentiable w.r.t. ``params``.

    Args:
      apply_fn: ``model.apply`` (``state.apply_fn``).
      params: the model's parameters.
      batch_stats: BatchNorm statistics.
      batch: a batch of the contract in ``handvae.data.spec`` (``spec.batch_keys()``).
      rng: PRNG key of the reparameterisation noise.
      weights: λ_heat, λ_cloud, β, β'.
      spec: the strategy record.
      emd: auction options of the EMD term.
      kl_reduction: "sum" or "mean" over the latent dimensions (the objective's).
      unlabelled_weighting: "pooled" or "separate" (the objective's).
      train: BatchNorm in training mode (batch statistics; the updated ``batch_stats`` are
        returned) or evaluation mode (running averages; returned unchanged).
      objective_fn: ``(spec, outputs, batch, weights, *, emd, kl_reduction,
        unlabelled_weighting) -> (loss, terms)``.

    Returns:
      ``(loss, (terms, new_batch_stats))``.
    """
    cloud = batch.get("cloud") if spec.uses_cloud_input else None
    if spec.uses_cloud_input and cloud is None:
        raise ValueError(f"strategy {spec.name} encodes the point cloud: the batch needs "
                         "'cloud' [B, N, 3]")
    variables = {"params": params, "batch_stats": batch_stats}
    if train:
        outputs, mutated = apply_fn(variables, batch["rgb"], cloud, rng, train=True,
                                    mutable=["batch_stats"])
        new_batch_stats = mutated["batch_stats"]
    else:
        outputs = apply_fn(variables, batch["rgb"], cloud, rng, train=False)
        new_batch_stats = batch_stats
    loss, terms = objective_fn(spec, outputs, batch, weights, emd=emd,
                               kl_reduction=kl_reduction,
                               unlabelled_weighting=unlabelled_weighting)
    return loss, (terms, new_batch_stats)


def train_step(state: TrainState, batch: dict[str, jax.Array], *, options: StepOptions,
               objective_fn: ObjectiveFn = negative_elbo) -> tuple[TrainState, Metrics]:
    """One optimiser step on the strategy's objective (un-jitted; see :func:`make_train_step`).

    Args:
      state: the train state (``apply_fn`` = ``model.apply``, ``tx`` = Adam).
      batch: a batch of the contract in ``handvae.data.spec`` (arrays [B, ...]).
      options: the resolved config (:func:`step_options_from_config`).
      objective_fn: the objective (default ``handvae.losses.negative_elbo``).

    Returns:
      The next state and a dict of scalar metrics: ``loss``, every loss term, ``beta``,
      ``learning_rate`` and ``grad_norm``.
    """
    return apply_update(state, batch, options.loss_weights(state.step),
                        jnp.asarray(options.learning_rate(state.step), jnp.float32),
                        options=options, objective_fn=objective_fn)


def apply_update(state: TrainState, batch: dict[str, jax.Array], weights: LossWeights,
                 learning_rate: jax.Array, *, options: StepOptions,
                 objective_fn: ObjectiveFn = negative_elbo) -> tuple[TrainState, Metrics]:
    """The body of :func:`train_step` with the step's weights given as (traced) arrays.

    ``weights`` (λ_heat, λ_cloud, β at this step, β') and ``learning_rate`` (a float32 scalar,
    reported as a metric) may be arrays, so the same function serves one run and each member
    of a population (``handvae.training.population``, which sets the optimiser's injected
    learning rate before calling it). Only ``options.spec``, ``.emd``, ``.kl_reduction`` and
    ``.unlabelled_weighting`` are read from ``options`` (static).
    """
    rng = jax.random.fold_in(state.rng, state.step)

    def loss_fn(params):
        return apply_and_loss(state.apply_fn, params, state.batch_stats, batch, rng, weights,
                              spec=options.spec, emd=options.emd, train=True,
                              kl_reduction=options.kl_reduction,
                              unlabelled_weighting=options.unlabelled_weighting,
                              objective_fn=objective_fn)

    (loss, (terms, new_batch_stats)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    new_state = state.apply_gradients(grads=grads, batch_stats=new_batch_stats)
    metrics = {**{k: jnp.asarray(v, jnp.float32) for k, v in terms.items()},
               "loss": loss.astype(jnp.float32),
               "beta": jnp.asarray(weights.beta, jnp.float32),
               "learning_rate": learning_rate, "grad_norm": optax.global_norm(grads)}
    return new_state, metrics


def make_train_step(config: ml_collections.ConfigDict, mesh: Mesh, *,
                    objective_fn: ObjectiveFn | None = None,
                    prepare_batch: PrepareBatchFn | None = None
                    ) -> Callable[[TrainState, dict[str, jax.Array]], tuple[TrainState, Metrics]]:
    """``train_step`` jitted on ``mesh``: state replicated and donated, batch split on axis 0.

    The config is resolved here, once (:func:`step_options_from_config`); the model and the
    optimiser come with the state (``create_train_state``). ``objective_fn`` defaults to
    ``handvae.losses.negative_elbo``. ``prepare_batch(raw, step) -> batch`` (optional) runs
    first, inside the same jit, on what the step is given: the device-side augmentation
    (``handvae.data.device_augment.make_batch_fn``, ``data.augment_on="device"``), whose
    draws are keyed by the state's step.
    """
    options = step_options_from_config(config)
    objective_fn = negative_elbo if objective_fn is None else objective_fn

    def step(state, batch):
        if prepare_batch is not None:
            batch = prepare_batch(batch, state.step)
        return train_step(state, batch, options=options, objective_fn=objective_fn)

    rep = sharding.replicated(mesh)
    return jax.jit(step, in_shardings=(rep, sharding.batch_sharded(mesh)),
                   out_shardings=(rep, rep), donate_argnums=0)


def make_eval_step(model: Any, mesh: Mesh, *, predict_fn: Callable[..., Any] | None = None
                   ) -> Callable[[dict[str, Any], jax.Array], jax.Array]:
    """``eval_step(variables, rgb [B, S, S, 3]) -> pose [B, 21, 3]`` jitted on ``mesh``.

    ``predict_fn(model, variables, rgb)`` defaults to ``handvae.models.vae.predict_pose``;
    the pose is in normalised root-relative units (the contract's ``pose``).
    """
    predict_fn = vae.predict_pose if predict_fn is None else predict_fn

    def eval_step(variables, rgb):
        return predict_fn(model, variables, rgb)

    data = sharding.batch_sharded(mesh)
    return jax.jit(eval_step, in_shardings=(sharding.replicated(mesh), data), out_shardings=data)
