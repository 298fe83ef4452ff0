"""β annealing, the learning-rate schedule and the loop's log/validate/save steps."""

import jax
import ml_collections
import numpy as np
import pytest

from experiments.configs import common
from handvae.training import schedules


def test_linear_beta_ends_and_midpoint():
    # optax.linear_schedule computes end + (start − end)(1 − t) in float32: β(0) is 1e-5 to
    # float32 rounding of the difference (relative 8e-6), hence rtol 2e-5.
    beta = schedules.beta_schedule(1e-5, 1e-3, 100, "linear")
    np.testing.assert_allclose(beta(0), 1e-5, rtol=2e-5)
    np.testing.assert_allclose(beta(50), (1e-5 + 1e-3) / 2, rtol=1e-6)
    np.testing.assert_allclose(beta(100), 1e-3, rtol=1e-6)
    np.testing.assert_allclose(beta(10_000), 1e-3, rtol=1e-6)


def test_log_beta_is_geometric():
    beta = schedules.beta_schedule(1e-5, 1e-3, 100, "log")
    np.testing.assert_allclose(beta(50), 1e-4, rtol=1e-5)  # geometric mean
    np.testing.assert_allclose(beta(100), 1e-3, rtol=1e-5)


def test_beta_is_jittable_and_zero_ramp_is_constant():
    beta = jax.jit(schedules.beta_schedule(1e-5, 1e-3, 0))
    np.testing.assert_allclose(beta(0), 1e-3, rtol=1e-6)


def test_beta_schedules_are_optax_schedules_and_log_stops_at_beta_max():
    beta = schedules.beta_schedule(1e-5, 1e-3, 100, "log")
    np.testing.assert_allclose(beta(0), 1e-5, rtol=1e-6)
    np.testing.assert_allclose(beta(10_000), 1e-3, rtol=1e-6)  # bounded by end_value
    np.testing.assert_allclose(jax.jit(beta)(25), 1e-5 * 100 ** 0.25, rtol=1e-5)


def test_beta_from_paper_config():
    config = common.get_base_config("rhd")
    assert "beta_max" not in config.model  # β lives with the objective, not the model
    beta = schedules.beta_schedule_from_config(config)
    np.testing.assert_allclose(beta(0), 1e-5, rtol=2e-5)
    np.testing.assert_allclose(beta(100_000), 1e-3, rtol=1e-6)


def test_bad_beta_arguments_raise():
    with pytest.raises(ValueError, match="beta_anneal"):
        schedules.beta_schedule(1e-5, 1e-3, 10, "cosine")
    with pytest.raises(ValueError, match="log annealing"):
        schedules.beta_schedule(0.0, 1e-3, 10, "log")


def test_learning_rate_divided_by_ten_twice():
    lr = schedules.learning_rate_from_config(common.get_base_config("rhd"))
    np.testing.assert_allclose(lr(0), 1e-4, rtol=1e-6)
    np.testing.assert_allclose(lr(199_999), 1e-4, rtol=1e-6)
    np.testing.assert_allclose(lr(200_001), 1e-5, rtol=1e-6)
    np.testing.assert_allclose(lr(300_001), 1e-6, rtol=1e-6)


def test_unsorted_boundaries_raise():
    with pytest.raises(ValueError, match="lr_boundaries"):
        schedules.learning_rate_schedule(1e-4, (300, 200))


def test_loop_events_fall_every_period_and_all_after_the_last_step():
    config = ml_collections.ConfigDict({"log_every": 2, "eval_every": 3, "checkpoint_every": 0})
    events = [schedules.events_after(done, 7, config) for done in range(1, 8)]
    assert [e.log for e in events] == [False, True, False, True, False, True, True]
    assert [e.evaluate for e in events] == [False, False, True, False, False, True, True]
    assert [e.save for e in events] == [False] * 6 + [True]   # 0: only at the end
    log, evaluate, save = schedules.events_after(4, 7, config)
    assert (log, evaluate, save) == (True, False, False)
