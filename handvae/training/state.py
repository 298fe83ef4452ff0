"""The train state: flax's ``TrainState`` plus BatchNorm statistics and the base RNG."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state

from handvae.data import spec
from handvae.models import vae
from handvae.training import schedules

# Streams folded out of the config seed: one for initialisation, one for training steps.
_INIT_STREAM = 0
_TRAIN_STREAM = 1


class TrainState(train_state.TrainState):
    """Everything a step reads and writes; a pytree, saved whole by orbax.

    ``flax.training.train_state.TrainState`` (``step``, ``params``, ``opt_state``; static
    ``apply_fn`` = ``model.apply`` and ``tx``; ``apply_gradients``) plus:

    Attributes:
      batch_stats: BatchNorm running statistics (``{}`` for a model without BatchNorm).
      rng: uint32[2] base key; step ``s`` uses ``jax.random.fold_in(rng, s)``.
    """

    batch_stats: Any
    rng: jax.Array

    def variables(self) -> dict[str, Any]:
        """The flax variables ``{'params', 'batch_stats'}`` for ``model.apply``."""
        return {"params": self.params, "batch_stats": self.batch_stats}


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam with the piecewise-constant learning rate of ``config.optimizer``."""
    return optax.adam(schedules.learning_rate_from_config(config))


def init_batch(config: ml_collections.ConfigDict, batch_size: int = 2) -> dict[str, np.ndarray]:
    """A contract-shaped dummy batch with the config's sizes, used to initialise a model."""
    return spec.dummy_batch(batch_size=batch_size, image_size=config.data.image_size,
                            num_points=config.data.num_points,
                            heatmap_size=config.data.heatmap_size, seed=0)


def create_train_state(config: ml_collections.ConfigDict, model: Any,
                       batch: Mapping[str, Any] | None = None, *,
                       init_fn: Callable[..., Mapping[str, Any]] | None = None,
                       tx: optax.GradientTransformation | None = None) -> TrainState:
    """Initialises parameters, BatchNorm statistics and Adam state from ``config.seed``.

    Args:
      config: the experiment config (``seed``, ``optimizer``, ``data`` sizes).
      model: a flax module from ``handvae.models.vae.build_model``; ``model.apply`` becomes
        the state's ``apply_fn``.
      batch: a batch (host arrays, contract shapes) used only for shapes; default
        :func:`init_batch`.
      init_fn: ``(model, rng, batch) -> {'params', 'batch_stats'}``; default
        ``handvae.models.vae.init_variables``.
      tx: the optimiser; default :func:`make_optimizer`. States that share one ``tx`` object
        (and model) stack with ``jax.tree.map`` (``handvae.training.population``).

    Returns:
      The state at step 0 (host/default-device arrays; place it with ``sharding.replicate``).
    """
    init_fn = vae.init_variables if init_fn is None else init_fn
    batch = init_batch(config) if batch is None else batch
    seed_key = jax.random.PRNGKey(config.seed)
    variables = init_fn(model, jax.random.fold_in(seed_key, _INIT_STREAM), batch)
    if "params" not in variables:
        raise ValueError(f"init_fn must return a dict with 'params', got keys {list(variables)}")
    params = variables["params"]
    tx = make_optimizer(config) if tx is None else tx
    return TrainState(step=jnp.zeros((), jnp.int32), apply_fn=model.apply, params=params,
                      tx=tx, opt_state=tx.init(params),
                      batch_stats=variables.get("batch_stats", {}),
                      rng=jax.random.fold_in(seed_key, _TRAIN_STREAM))


def abstract_train_state(config: ml_collections.ConfigDict, model: Any, *,
                         init_fn: Callable[..., Mapping[str, Any]] | None = None) -> TrainState:
    """Shapes and dtypes of :func:`create_train_state` without computing anything."""
    batch = init_batch(config)
    return jax.eval_shape(lambda: create_train_state(config, model, batch, init_fn=init_fn))
