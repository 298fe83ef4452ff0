"""Schedules of the training loop: the KL weight β and the learning rate.

Yang et al. (ICCV 2019, Sec. 4) anneal β from 1e-5 to 1e-3 and train with Adam at 1e-4,
dividing the learning rate by 10 twice. The config fields are ``model.beta_min``,
``model.beta_max``, ``model.beta_anneal_steps``, ``model.beta_anneal`` ("linear" or
"log"), ``optimizer.lr``, ``optimizer.lr_boundaries`` and ``optimizer.lr_decay``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax.numpy as jnp
import ml_collections
import optax

BETA_ANNEALS = ("linear", "log")


def beta_schedule(beta_min: float, beta_max: float, anneal_steps: int,
                  anneal: str = "linear") -> Callable[[jnp.ndarray], jnp.ndarray]:
    """β(step): ``beta_min`` at step 0, ``beta_max`` from ``anneal_steps`` on.

    Args:
      beta_min: KL weight at step 0 (> 0 for ``anneal="log"``).
      beta_max: KL weight reached at ``anneal_steps`` and kept afterwards.
      anneal_steps: length of the ramp in optimiser steps; 0 means β = ``beta_max`` always.
      anneal: "linear" (straight line in β) or "log" (straight line in log β, i.e. the same
        factor every step).

    Returns:
      A jittable function from an integer step (scalar array) to a float32 scalar.
    """
    if anneal not in BETA_ANNEALS:
        raise ValueError(f"anneal must be one of {BETA_ANNEALS}, got {anneal!r}; "
                         "set config.model.beta_anneal")
    if anneal_steps < 0:
        raise ValueError(f"anneal_steps must be >= 0, got {anneal_steps}")
    if anneal == "log" and (beta_min <= 0 or beta_max <= 0):
        raise ValueError(f"log annealing needs beta_min, beta_max > 0, got {beta_min}, "
                         f"{beta_max}; use anneal='linear' for a zero end point")

    def schedule(step: jnp.ndarray) -> jnp.ndarray:
        if anneal_steps == 0:
            return jnp.asarray(beta_max, jnp.float32)
        fraction = jnp.clip(jnp.asarray(step, jnp.float32) / anneal_steps, 0.0, 1.0)
        if anneal == "linear":
            return jnp.asarray(beta_min + (beta_max - beta_min) * fraction, jnp.float32)
        log_beta = jnp.log(beta_min) + (jnp.log(beta_max) - jnp.log(beta_min)) * fraction
        return jnp.exp(log_beta).astype(jnp.float32)

    return schedule


def learning_rate_schedule(lr: float, boundaries: Sequence[int], decay: float = 0.1
                           ) -> optax.Schedule:
    """Piecewise-constant learning rate: ``lr``, multiplied by ``decay`` at each boundary.

    Args:
      lr: initial learning rate.
      boundaries: increasing optimiser steps at which the rate is multiplied by ``decay``.
      decay: factor applied at each boundary (0.1 divides by ten).

    Returns:
      An optax schedule (step → learning rate).
    """
    boundaries = [int(b) for b in boundaries]
    if any(b <= 0 for b in boundaries) or boundaries != sorted(set(boundaries)):
        raise ValueError("optimizer.lr_boundaries must be strictly increasing positive steps, "
                         f"got {boundaries}")
    return optax.piecewise_constant_schedule(lr, {b: decay for b in boundaries})


def beta_schedule_from_config(config: ml_collections.ConfigDict
                              ) -> Callable[[jnp.ndarray], jnp.ndarray]:
    """The β schedule described by ``config.model``."""
    m = config.model
    return beta_schedule(m.beta_min, m.beta_max, m.beta_anneal_steps,
                         m.get("beta_anneal", "linear"))


def learning_rate_from_config(config: ml_collections.ConfigDict) -> optax.Schedule:
    """The learning-rate schedule described by ``config.optimizer``."""
    o = config.optimizer
    return learning_rate_schedule(o.lr, o.lr_boundaries, o.lr_decay)
