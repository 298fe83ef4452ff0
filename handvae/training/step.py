"""Jitted training and evaluation steps on the ``("data",)`` mesh.

``train_step(state, batch) -> (state, metrics)`` donates the incoming state, reads the batch
split along axis 0 and returns the state replicated. Its randomness is
``fold_in(state.rng, state.step)``: a step's noise depends only on the seed and the step
number, so a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from handvae.losses import objectives
from handvae.models import vae
from handvae.training import schedules, sharding
from handvae.training.state import TrainState, make_optimizer

Metrics = dict[str, jax.Array]


def train_step(state: TrainState, batch: dict[str, jax.Array], *, model: Any,
               config: ml_collections.ConfigDict, tx: optax.GradientTransformation,
               loss_fn: Callable[..., Any], weights_fn: Callable[..., Any]
               ) -> tuple[TrainState, Metrics]:
    """One Adam step on the strategy's objective (un-jitted; see :func:`make_train_step`).

    Args:
      state: the train state.
      batch: a batch of the contract in ``handvae.data.spec`` (arrays [B, ...]).
      model: the flax module.
      config: experiment config (``model.beta_*``, ``loss.*``).
      tx: the optimiser of :func:`handvae.training.state.make_optimizer`.
      loss_fn: ``compute_loss(model, params, batch_stats, batch, rng, weights, *, train,
        emd_epsilon, emd_max_iterations) -> (loss, (terms, new_batch_stats))``.
      weights_fn: ``(config, beta) -> LossWeights``.

    Returns:
      The next state and a dict of scalar metrics: ``loss``, every loss term, ``beta``,
      ``learning_rate`` and ``grad_norm``.
    """
    rng = jax.random.fold_in(state.rng, state.step)
    beta = schedules.beta_schedule_from_config(config)(state.step)
    weights = weights_fn(config, beta)

    def objective(params):
        return loss_fn(model, params, state.batch_stats, batch, rng, weights, train=True,
                       emd_epsilon=config.loss.emd_epsilon,
                       emd_max_iterations=config.loss.emd_max_iterations)

    (loss, (terms, new_batch_stats)), grads = jax.value_and_grad(
        objective, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**{k: jnp.asarray(v, jnp.float32) for k, v in terms.items()},
               "loss": loss.astype(jnp.float32), "beta": beta,
               "learning_rate": jnp.asarray(
                   schedules.learning_rate_from_config(config)(state.step), jnp.float32),
               "grad_norm": optax.global_norm(grads)}
    new_state = state.replace(step=state.step + 1, params=params,
                              batch_stats=new_batch_stats, opt_state=opt_state)
    return new_state, metrics


def make_train_step(config: ml_collections.ConfigDict, model: Any, mesh: Mesh, *,
                    loss_fn: Callable[..., Any] | None = None,
                    weights_fn: Callable[..., Any] | None = None
                    ) -> Callable[[TrainState, dict[str, jax.Array]], tuple[TrainState, Metrics]]:
    """``train_step`` jitted on ``mesh``: state replicated and donated, batch split on axis 0.

    ``loss_fn``/``weights_fn`` default to ``handvae.losses.objectives.compute_loss`` and
    ``loss_weights_from_config``.
    """
    loss_fn = objectives.compute_loss if loss_fn is None else loss_fn
    weights_fn = objectives.loss_weights_from_config if weights_fn is None else weights_fn
    tx = make_optimizer(config)

    def step(state, batch):
        return train_step(state, batch, model=model, config=config, tx=tx,
                          loss_fn=loss_fn, weights_fn=weights_fn)

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
