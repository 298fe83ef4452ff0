"""Schedules of the training loop: the KL weight β and the learning rate, as optax schedules.

Yang et al. (ICCV 2019, Sec. 4) anneal β from 1e-5 to 1e-3 and train with Adam at 1e-4,
"lower[ing] the learning rate by a factor of 10 two times after convergence". The config fields
are ``loss.beta_min``, ``loss.beta_max``, ``loss.beta_anneal_steps``, ``loss.beta_anneal``
("linear" or "log"), ``optimizer.lr``, ``optimizer.lr_boundaries`` and ``optimizer.lr_decay``.
Both schedules are built once from the config, outside the jitted step
(``handvae.training.step.step_options_from_config``). :func:`events_after` is the loop's
other schedule, on the host: after which steps it logs, validates and saves (the single-run
and the population loop share it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

BETA_ANNEALS = ("linear", "log")


def beta_schedule(beta_min: float, beta_max: float, anneal_steps: int,
                  anneal: str = "linear") -> optax.Schedule:
    """β(step): ``beta_min`` at step 0, ``beta_max`` from ``anneal_steps`` on.

    Args:
      beta_min: KL weight at step 0 (> 0 for ``anneal="log"``).
      beta_max: KL weight reached at ``anneal_steps`` and kept afterwards.
      anneal_steps: length of the ramp in optimiser steps; 0 means β = ``beta_max`` always.
      anneal: "linear" (``optax.linear_schedule``: a straight line in β) or "log"
        (``optax.exponential_decay`` with rate beta_max/beta_min: a straight line in log β,
        the same factor every step).

    Returns:
      An optax schedule: a jittable function from an integer step to a float32 scalar.
    """
    if anneal not in BETA_ANNEALS:
        raise ValueError(f"anneal must be one of {BETA_ANNEALS}, got {anneal!r}; "
                         "set config.loss.beta_anneal")
    if anneal_steps < 0:
        raise ValueError(f"anneal_steps must be >= 0, got {anneal_steps}; "
                         "set config.loss.beta_anneal_steps")
    if anneal == "log" and (beta_min <= 0 or beta_max <= 0):
        raise ValueError(f"log annealing needs beta_min, beta_max > 0, got {beta_min}, "
                         f"{beta_max}; use anneal='linear' for a zero end point")
    if anneal_steps == 0:
        return optax.constant_schedule(float(beta_max))
    if anneal == "linear":
        return optax.linear_schedule(float(beta_min), float(beta_max), int(anneal_steps))
    # end_value bounds the ramp at beta_max (an upper bound when the rate is above 1).
    return optax.exponential_decay(float(beta_min), int(anneal_steps),
                                   float(beta_max) / float(beta_min), end_value=float(beta_max))


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


def beta_schedule_from_config(config: ml_collections.ConfigDict) -> optax.Schedule:
    """The β schedule described by ``config.loss`` (``beta_min``, ``beta_max``, ...)."""
    c = config.loss
    return beta_schedule(c.beta_min, c.beta_max, c.beta_anneal_steps, c.beta_anneal)


def learning_rate_from_config(config: ml_collections.ConfigDict) -> optax.Schedule:
    """The learning-rate schedule described by ``config.optimizer``."""
    o = config.optimizer
    return learning_rate_schedule(o.lr, o.lr_boundaries, o.lr_decay)


def beta_at(step: jax.Array, beta_min: jax.Array, beta_max: jax.Array, anneal_steps: int,
            anneal: str = "linear") -> jax.Array:
    """β at ``step`` with array end points: :func:`beta_schedule`'s value, traceable in them.

    :func:`beta_schedule` builds an optax schedule from Python floats (and checks them); a
    population passes each member's ``beta_min``/``beta_max`` as traced scalars, which optax's
    exponential decay cannot take (it branches on the rate in Python). Same formulas as
    optax's ``linear_schedule`` and ``exponential_decay(..., end_value=beta_max)``; equal to
    float32 rounding. Check the values with :func:`beta_schedule` first.

    Args:
      step: integer scalar, the optimiser step.
      beta_min: float32 scalar, β at step 0.
      beta_max: float32 scalar, β from ``anneal_steps`` on.
      anneal_steps: static length of the ramp (0: β = ``beta_max``).
      anneal: static, "linear" or "log".

    Returns:
      float32 scalar β.
    """
    if anneal not in BETA_ANNEALS:
        raise ValueError(f"anneal must be one of {BETA_ANNEALS}, got {anneal!r}")
    beta_min = jnp.asarray(beta_min, jnp.float32)
    beta_max = jnp.asarray(beta_max, jnp.float32)
    if anneal_steps == 0:
        return beta_max
    if anneal == "linear":
        count = jnp.clip(step, 0, anneal_steps)
        frac = 1 - count / anneal_steps
        # optax's (beta_min − beta_max)·frac + beta_max, but a float32 difference of the end
        # points would cancel at the small end: the weighted sum is exact at both ends.
        return beta_min * frac + beta_max * (1 - frac)
    rate = beta_max / beta_min
    value = jnp.where(step <= 0, beta_min, beta_min * jnp.power(rate, step / anneal_steps))
    return jnp.where(rate < 1.0, jnp.maximum(value, beta_max), jnp.minimum(value, beta_max))


class StepEvents(NamedTuple):
    """What the training loop does after a step; unpacks as ``log, evaluate, save``."""

    log: bool       # write the train means of the window (metrics.jsonl, TensorBoard)
    evaluate: bool  # validate, and keep the state if it is the best so far
    save: bool      # save a checkpoint


def events_after(done: int, num_steps: int, config: ml_collections.ConfigDict) -> StepEvents:
    """The events due once ``done`` steps are done, of a run of ``num_steps`` steps.

    Each is due every ``config.log_every``, ``config.eval_every`` and
    ``config.checkpoint_every`` steps (0 or less: never) and all three after the last step,
    so a finished run always ends logged, validated and saved.
    """
    def every(period: int) -> bool:
        return period > 0 and done % period == 0

    is_last = done == num_steps
    return StepEvents(every(config.log_every) or is_last, every(config.eval_every) or is_last,
                      every(config.checkpoint_every) or is_last)
