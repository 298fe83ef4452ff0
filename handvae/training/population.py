"""Populations: K runs that differ only in population fields, trained as one jitted program.

A population is K configs equal in every field except :data:`POPULATION_FIELDS` (the seed,
β's end points, β', λ_heat, λ_cloud and the learning rate). They share the architecture, so
their train states stack along a leading ``members`` axis and one ``jax.vmap``'d step
trains them all::

    configs ──check_population──▶ MemberHypers (float32 [K] each, arrays, not Python floats)
    create_population_state: K × create_train_state(config_k, model, tx=one optimiser)
                             → jax.tree.map(jnp.stack, ...)                      [K, ...]
    population step = jit(vmap(member_train_step, in_axes=(0, None | 0, 0, 0)))
    member_train_step(state, batch, hypers, active):
        β  = schedules.beta_at(step, β_min, β_max)         # arrays: one program for any values
        lr = learning_rate_schedule(lr_k, boundaries)(step) # written into inject_hyperparams
        step_lib.apply_update(...)                          # the single run's step body

Design notes (the decisions; WORKSPACE.md has the one-line record):

* **One optimiser object.** States from separate ``create_train_state`` calls carry different
  ``tx`` closures and do not stack; every member is built with the same
  ``optax.inject_hyperparams(optax.adam)`` object, whose learning rate lives in the state
  (``opt_state.hyperparams["learning_rate"]``) and is set from the member's schedule before
  each update. Adam's other constants stay static, as in a single run.
* **Equal to a run trained alone.** The step body is the single run's
  (``step.apply_update``); β comes from :func:`handvae.training.schedules.beta_at`, equal to
  the optax schedule to float32 rounding; each member keeps its own RNG stream
  (``fold_in(rng_k, step)``). A member whose data stream is its own (per-member batches, or a
  shared batch when every member has the same seed) reproduces the run trained alone to float
  tolerance (tests/training/test_training_population.py). With a shared batch and different
  seeds, every member reads member 0's stream.
* **The EMD under vmap.** The auction's loops branch on per-element values; its solve has its
  own vmap rule (``handvae.losses.emd._member_batched_solve``) that folds the member axis into
  the batch ("dense", "pallas") or solves members one after another ("pooled", CPU), so vmap
  never runs every branch.
* **Mesh.** ``("members", "data")`` (``sharding.make_population_mesh``): the state is split
  over ``members``; a shared batch [B, ...] is split over ``data`` (and read by every member),
  per-member batches [K, B, ...] over both.
* **A diverged member** (NaN/Inf loss) is frozen (``active`` False: its update is dropped) and
  reported as failed; the others go on.
* **When it pays.** On 2 CPU cores it does not (FACTS.md: 0.5–0.8× one run's member-steps/s;
  vmapped convolutions become grouped convolutions); on a GPU the cpu-scale step is
  launch-bound and the paper-size trainer input-bound, so members are nearly free
  (benchmarks/population.py).

Decision (moved from WORKSPACE.md)

**Populations** (issue 25, items 1–2; `handvae/training/population.py`,
`population_loop.py`, design notes in the docstring). Runs equal outside seed, β end
points, β′, λ_heat, λ_cloud and lr train as one `vmap`ped step (one `inject_hyperparams`
Adam, per-member values as arrays); each member's directory is a single run's. The auction's
solve has its own vmap rule (fold members into the batch; pooled: one member at a time, to
stay exact). `sweep --population=auto` uses it only where a committed
`benchmarks/figures/*/population.json` of the device kind measured a gain: not on 2 cores.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from handvae.losses.objectives import LossWeights, negative_elbo
from handvae.training import run_config, schedules, sharding, step as step_lib
from handvae.training.state import TrainState, create_train_state, make_optimizer

# Fields that may differ between the members of one population (dotted config paths).
POPULATION_FIELDS = ("seed", "loss.beta_min", "loss.beta_max", "loss.beta_prime",
                     "loss.lambda_heat", "loss.lambda_cloud", "optimizer.lr")
# Adam's constants are not population fields: static, exactly as optax.adam(schedule) has them.
_STATIC_ADAM_ARGS = ("b1", "b2", "eps", "eps_root", "mu_dtype", "nesterov")


class MemberHypers(NamedTuple):
    """Each member's population fields as float32 arrays ([K] stacked; scalars per member).

    Attributes:
      lambda_heat: ``config.loss.lambda_heat``.
      lambda_cloud: ``config.loss.lambda_cloud``.
      beta_prime: ``config.loss.beta_prime``.
      beta_min: ``config.loss.beta_min``.
      beta_max: ``config.loss.beta_max``.
      learning_rate: ``config.optimizer.lr`` (the schedule's initial rate).
    """

    lambda_heat: Any
    lambda_cloud: Any
    beta_prime: Any
    beta_min: Any
    beta_max: Any
    learning_rate: Any


def _field(config: ml_collections.ConfigDict, dotted: str) -> Any:
    node = config
    for name in dotted.split("."):
        node = node[name]
    return node


def shared_key(config: ml_collections.ConfigDict) -> str:
    """A string equal for two configs iff they differ only in :data:`POPULATION_FIELDS`."""
    flat = run_config.flatten(json.loads(config.to_json_best_effort(sort_keys=True)))
    return json.dumps({k: v for k, v in flat.items() if k not in POPULATION_FIELDS},
                      sort_keys=True)



def check_population(configs: Sequence[ml_collections.ConfigDict]) -> None:
    """Raises a ValueError naming the fields when ``configs`` cannot train as one population.

    Each config must be valid on its own (``run_config.validate``, its β schedule), and all
    must be equal outside :data:`POPULATION_FIELDS`. NotImplementedError for what a
    population cannot do yet: device-side augmentation (``data.augment_on="device"``,
    :mod:`handvae.data.device_augment`, is for single runs; ``"auto"`` resolves to the host).
    """
    if not configs:
        raise ValueError("a population needs at least one config")
    if any(str(c.data.get("augment_on", "host")) == "device" for c in configs):
        raise NotImplementedError("a population augments on the host: data.augment_on='device' "
                                  "is for single runs; set data.augment_on='auto' or 'host' "
                                  "(auto resolves to the host path here)")
    for config in configs:
        run_config.validate(config)
        schedules.beta_schedule_from_config(config)   # checks the β values (log needs > 0)
        schedules.learning_rate_from_config(config)
    for index, config in enumerate(configs[1:], start=1):
        other = {k: v for k, v in run_config.diff(configs[0], config).items()
                 if k not in POPULATION_FIELDS}
        if other:
            listed = "; ".join(f"{k}: {a!r} vs {b!r}" for k, (a, b) in other.items())
            raise ValueError(f"member {index} differs from member 0 outside the population "
                             f"fields {POPULATION_FIELDS}: {listed}. Train them as separate "
                             "populations (experiments.sweep groups them so).")


def member_hypers(configs: Sequence[ml_collections.ConfigDict]) -> MemberHypers:
    """The members' population fields, stacked: each a float32 [K] host array."""
    def column(field: str) -> np.ndarray:
        return np.asarray([float(_field(c, field)) for c in configs], np.float32)
    return MemberHypers(column("loss.lambda_heat"), column("loss.lambda_cloud"),
                        column("loss.beta_prime"), column("loss.beta_min"),
                        column("loss.beta_max"), column("optimizer.lr"))


def make_population_optimizer(config: ml_collections.ConfigDict
                              ) -> optax.GradientTransformation:
    """Adam with an injected learning rate (set per member and step by the population step)."""
    return optax.inject_hyperparams(optax.adam, static_args=_STATIC_ADAM_ARGS)(
        learning_rate=float(config.optimizer.lr))


def create_population_state(configs: Sequence[ml_collections.ConfigDict], model: Any, *,
                            init_fn: Callable[..., Mapping[str, Any]] | None = None
                            ) -> TrainState:
    """K train states (each from its config's seed) stacked along a leading axis: [K, ...].

    Built with one optimiser object (:func:`make_population_optimizer`), so ``jax.tree.map``
    stacks them; the injected learning rate starts at each member's ``optimizer.lr``.
    """
    tx = make_population_optimizer(configs[0])
    states = [create_train_state(c, model, init_fn=init_fn, tx=tx) for c in configs]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    return set_learning_rate(stacked, jnp.asarray(member_hypers(configs).learning_rate))


def abstract_population_state(configs: Sequence[ml_collections.ConfigDict], model: Any, *,
                              init_fn: Callable[..., Mapping[str, Any]] | None = None
                              ) -> TrainState:
    """Shapes and dtypes of :func:`create_population_state`, nothing computed."""
    return jax.eval_shape(lambda: create_population_state(configs, model, init_fn=init_fn))


def set_learning_rate(state: TrainState, learning_rate: jax.Array) -> TrainState:
    """``state`` with the injected learning rate replaced (a scalar, or [K] when stacked)."""
    opt_state = state.opt_state
    hyperparams = {**opt_state.hyperparams,
                   "learning_rate": jnp.asarray(learning_rate, jnp.float32)}
    return state.replace(opt_state=opt_state._replace(hyperparams=hyperparams))


def member_state(state: TrainState, index: int) -> TrainState:
    """Member ``index`` of a stacked population state (arrays without the member axis)."""
    return jax.tree.map(lambda x: x[index], state)


def as_single_run_state(member: TrainState, config: ml_collections.ConfigDict) -> TrainState:
    """One member's state in a single run's layout (``create_train_state``'s optimiser).

    The injected-hyperparameter wrapper is dropped: Adam's moments and count are the same
    arrays, and the schedule's count is the step. The result restores, evaluates and resumes
    exactly as a run trained alone (``restore_for_inference``, ``train_and_evaluate``).
    """
    adam_state = member.opt_state.inner_state[0]
    tx = make_optimizer(config)
    return member.replace(tx=tx, opt_state=(
        adam_state, optax.ScaleByScheduleState(count=jnp.asarray(member.step, jnp.int32))))


def member_train_step(state: TrainState, batch: dict[str, jax.Array], hypers: MemberHypers,
                      active: jax.Array, *, options: step_lib.StepOptions,
                      beta_anneal_steps: int, beta_anneal: str,
                      lr_boundaries: Sequence[int], lr_decay: float,
                      objective_fn: step_lib.ObjectiveFn = negative_elbo
                      ) -> tuple[TrainState, step_lib.Metrics]:
    """One member's step (unbatched; the population vmaps it).

    Args:
      state: one member's state (optimiser from :func:`make_population_optimizer`).
      batch: its batch, arrays [B, ...].
      hypers: its population fields, float32 scalars.
      active: bool scalar; False keeps the state unchanged (a diverged member).
      options: the shared fields (``spec``, ``emd``, ``kl_reduction``,
        ``unlabelled_weighting``); its float weights
        and schedules are not read.
      beta_anneal_steps, beta_anneal: the shared shape of β's schedule (static).
      lr_boundaries, lr_decay: the shared shape of the learning-rate schedule (static).
      objective_fn: the objective (default ``handvae.losses.negative_elbo``).

    Returns:
      The next state and the single run's scalar metrics.
    """
    step = state.step
    beta = schedules.beta_at(step, hypers.beta_min, hypers.beta_max, beta_anneal_steps,
                             beta_anneal)
    weights = LossWeights(lambda_heat=hypers.lambda_heat, lambda_cloud=hypers.lambda_cloud,
                          beta=beta, beta_prime=hypers.beta_prime)
    learning_rate = jnp.asarray(schedules.learning_rate_schedule(
        hypers.learning_rate, lr_boundaries, lr_decay)(step), jnp.float32)
    state = set_learning_rate(state, learning_rate)
    new_state, metrics = step_lib.apply_update(state, batch, weights, learning_rate,
                                               options=options, objective_fn=objective_fn)
    new_state = jax.tree.map(lambda new, old: jnp.where(active, new, old), new_state, state)
    return new_state, metrics


def make_population_train_step(config: ml_collections.ConfigDict, mesh: Mesh, *,
                               shared_batch: bool = True,
                               objective_fn: step_lib.ObjectiveFn | None = None
                               ) -> Callable[..., tuple[TrainState, step_lib.Metrics]]:
    """``step(state [K], batch, hypers [K], active [K]) -> (state, metrics [K])``, jitted.

    ``batch`` is [B, ...] read by every member (``shared_batch``) or [K, B, ...]. The state
    is donated and split over the mesh's ``members`` axis; batches over ``data``.
    ``config`` is any member's (only shared fields are read).
    """
    options = step_lib.step_options_from_config(config)
    member_step = functools.partial(
        member_train_step, options=options,
        beta_anneal_steps=int(config.loss.beta_anneal_steps),
        beta_anneal=str(config.loss.beta_anneal),
        lr_boundaries=tuple(int(b) for b in config.optimizer.lr_boundaries),
        lr_decay=float(config.optimizer.lr_decay),
        objective_fn=negative_elbo if objective_fn is None else objective_fn)
    population_step = jax.vmap(member_step, in_axes=(0, None if shared_batch else 0, 0, 0))
    members = sharding.member_sharded(mesh)
    batch = sharding.batch_sharded(mesh) if shared_batch else sharding.member_batch_sharded(mesh)
    return jax.jit(population_step, in_shardings=(members, batch, members, members),
                   out_shardings=(members, members), donate_argnums=0)


def place_batch(batch: Mapping[str, Any], mesh: Mesh, *, shared_batch: bool
                ) -> dict[str, jax.Array]:
    """Puts a host batch on the population mesh: [B, ...] shared or [K, B, ...] per member.

    One process only (a population does not span hosts).
    """
    axis = 0 if shared_batch else 1
    sizes = {np.shape(v)[axis] for v in batch.values()}
    if len(sizes) != 1:
        raise ValueError(f"batch entries disagree on the batch size (axis {axis}): {sizes}")
    sharding.check_batch_size(sizes.pop(), mesh, name="batch size")
    target = sharding.batch_sharded(mesh) if shared_batch else sharding.member_batch_sharded(mesh)
    return {k: jax.device_put(np.asarray(v), target) for k, v in batch.items()}


def place_members(tree: Any, mesh: Mesh) -> Any:
    """Puts a stacked pytree [K, ...] on the mesh, axis 0 split over ``members``."""
    return jax.device_put(tree, sharding.member_sharded(mesh))
