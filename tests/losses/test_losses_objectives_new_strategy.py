"""Adding a strategy is one row: a seventh record trains and scores with no other code change.

``RC2P_poe`` (S4's product of experts decoding the pose only) is registered for the test in
``STRATEGY_SPECS`` (monkeypatched, so the registry is restored afterwards); the model, the one
ELBO, the state and the jitted train step all derive what they do from the record.
"""

import functools

import jax
import numpy as np
import pytest

from model_configs import tiny_config
from handvae.data.spec import dummy_batch
from handvae.models import build_model, registry
from handvae.models.registry import StrategySpec
from handvae.training import state as state_lib, step as step_lib

# Tiny shapes run in milliseconds; XLA's optimisation passes are what cost time on 2 cores.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
SEVENTH = StrategySpec("RC2P_poe", "test", sources=("R", "C", "RC"), targets=("pose",),
                       fusion="poe", prior_kl=("R", "C"))


@pytest.fixture
def seventh_strategy(monkeypatch):
    monkeypatch.setitem(registry.STRATEGY_SPECS, SEVENTH.name, SEVENTH.validate())
    return SEVENTH


def test_a_registered_row_trains_and_evaluates(seventh_strategy):
    config = tiny_config(seventh_strategy.name)
    model = build_model(config.model)
    state = state_lib.create_train_state(config, model)
    assert set(state.params) == {"rgb_encoder", "cloud_encoder", "pose_decoder"}
    # The train step of make_train_step, on one device and compiled cheaply.
    options = step_lib.step_options_from_config(config)
    train_step = jax.jit(functools.partial(step_lib.train_step, options=options),
                         compiler_options=FAST_COMPILE)
    keys = seventh_strategy.batch_keys()
    assert keys == ("rgb", "pose", "cloud", "labelled", "cloud_resampled")
    losses = []
    for step in range(2):
        full = dummy_batch(config.batch_size, config.data.image_size, config.data.num_points,
                           config.data.heatmap_size, seed=step)
        batch = {k: full[k] for k in keys}  # only what the record says it reads
        state, metrics = train_step(state, batch)
        losses.append(float(metrics["loss"]))
    assert set(metrics) == {"R2P", "C2P", "RC2P", "kl_R", "kl_C", "loss", "beta",
                            "learning_rate", "grad_norm"}
    assert np.all(np.isfinite(losses)) and int(state.step) == 2
    # Evaluating the loss (BatchNorm running averages) uses the same derived objective.
    evaluate = jax.jit(functools.partial(step_lib.apply_and_loss, state.apply_fn,
                                         spec=options.spec, emd=options.emd, train=False),
                       compiler_options=FAST_COMPILE)
    loss, (terms, stats) = evaluate(state.params, state.batch_stats, batch, jax.random.key(0),
                                    options.loss_weights(state.step))
    np.testing.assert_allclose(
        loss, terms["R2P"] + terms["C2P"] + terms["RC2P"]
        + float(options.loss_weights(state.step).beta) * (terms["kl_R"] + terms["kl_C"]),
        rtol=1e-5)
    jax.tree.map(np.testing.assert_array_equal, stats, state.batch_stats)


def test_an_inconsistent_row_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="RC2X.*fusion 'none' gives"):
        StrategySpec("RC2X", "test", ("RC",), ("pose",), "none", ("RC",)).validate()
    with pytest.raises(ValueError, match="no KL of its own"):
        SEVENTH._replace(prior_kl=("R", "C", "RC")).validate()
    with pytest.raises(ValueError, match="targets"):
        SEVENTH._replace(targets=("depth",)).validate()
