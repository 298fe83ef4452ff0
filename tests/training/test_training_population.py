"""Populations: members equal runs trained alone, per-member files, resume, the real step."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import training_standins as standins
from handvae.training import checkpoint as checkpoint_lib
from handvae.training import loop, population, population_loop, sharding, step as step_lib
from handvae.training.state import create_train_state


def _members(**fields):
    """Tiny stand-in configs, one per value of each field list (zipped)."""
    configs = []
    for values in zip(*fields.values()):
        config = standins.tiny_config()
        for dotted, value in zip(fields, values):
            group, _, leaf = dotted.rpartition("__")
            (config[group] if group else config)[leaf] = value
        configs.append(config)
    return configs


def _params(workdir, which="latest"):
    config = checkpoint_lib.read_config(str(workdir))
    template = create_train_state(config, standins.build_model(config.model),
                                  init_fn=standins.init_variables)
    checkpoints = checkpoint_lib.Checkpoints(str(workdir), read_only=True, async_save=False)
    try:
        abstract = checkpoint_lib.sharded_abstract(template, sharding.make_mesh())
        return jax.device_get(checkpoints.restore(abstract, which)).params
    finally:
        checkpoints.close()


def _alone(config, workdir):
    return loop.train_and_evaluate(config, str(workdir), batches=standins.batches(config),
                                   eval_batches=standins.eval_batches(config),
                                   functions=standins.FUNCTIONS)


def _assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_members_equal_the_runs_trained_alone(tmp_path):
    # Same seed, so one shared batch is each member's own stream; β, λ and lr differ.
    configs = _members(loss__beta_max=[1e-3, 5e-2, 1e-3], loss__lambda_cloud=[1.0, 1.0, 3.0],
                       optimizer__lr=[1e-2, 1e-2, 3e-3])
    workdirs = [tmp_path / f"m{k}" for k in range(3)]
    finals = population_loop.train_population(
        configs, workdirs, tmp_path / "pop", batches=standins.batches(configs[0]),
        eval_batches=standins.eval_batches(configs[0]), functions=standins.FUNCTIONS)
    for k, config in enumerate(configs):
        alone = _alone(config, tmp_path / f"alone{k}")
        member = json.load(open(workdirs[k] / "final_metrics.json"))
        assert set(member) == set(alone)            # the single run's schema
        for key in ("train_loss", "train_beta", "train_learning_rate", "mean_epe_mm"):
            assert member[key] == pytest.approx(alone[key], rel=1e-5), key
        assert member["test"]["mean_epe_mm"] == pytest.approx(alone["test"]["mean_epe_mm"],
                                                              rel=1e-5)
        assert member["test"]["checkpoint_step"] == alone["test"]["checkpoint_step"]
        assert finals[k]["train_loss"] == member["train_loss"]
        _assert_trees_close(_params(workdirs[k]), _params(tmp_path / f"alone{k}"))
        _assert_trees_close(_params(workdirs[k], "best"), _params(tmp_path / f"alone{k}", "best"))
    # The members really differ, and each directory is a single run's.
    assert len({json.load(open(w / "final_metrics.json"))["train_loss"] for w in workdirs}) == 3
    assert {"config.json", "metrics.jsonl", "checkpoints", "checkpoints_best",
            "final_metrics.json"} <= set(os.listdir(workdirs[0]))
    assert checkpoint_lib.read_config(str(workdirs[2])).optimizer.lr == 3e-3
    assert json.load(open(tmp_path / "pop" / "population.json"))["shared_batch"] is True


def test_seeds_with_one_batch_per_member_equal_runs_alone_and_resume_exactly(tmp_path):
    configs = _members(seed=[0, 1])
    for config in configs:
        config.num_train_steps = 4
    workdirs = [tmp_path / "s0", tmp_path / "s1"]

    def train(cfgs, dirs, pop):
        return population_loop.train_population(
            cfgs, dirs, pop, batches=[standins.batches(c) for c in cfgs],
            eval_batches=standins.eval_batches(cfgs[0]), functions=standins.FUNCTIONS)

    train(configs, workdirs, tmp_path / "pop")
    for config in configs:
        config.num_train_steps = 6      # resume from the stacked checkpoint at step 4
    train(configs, workdirs, tmp_path / "pop")
    assert json.load(open(tmp_path / "pop" / "population.json"))["shared_batch"] is False
    for k, config in enumerate(configs):
        _alone(config, tmp_path / f"alone{k}")
        _assert_trees_close(_params(workdirs[k]), _params(tmp_path / f"alone{k}"))
        records = [json.loads(line) for line in open(workdirs[k] / "metrics.jsonl")]
        assert [r["step"] for r in records if r["split"] == "train"] == [2, 4, 6]
    with pytest.raises(ValueError, match="holds another population"):
        train(configs, workdirs[::-1], tmp_path / "pop")


def test_a_diverging_member_is_frozen_and_reported(tmp_path):
    configs = _members(optimizer__lr=[1e-2, float("inf")])
    finals = population_loop.train_population(
        configs, [tmp_path / "ok", tmp_path / "bad"], tmp_path / "pop",
        batches=standins.batches(configs[0]), eval_batches=standins.eval_batches(configs[0]),
        functions=standins.FUNCTIONS)
    assert finals[0]["step"] == 6.0 and (tmp_path / "ok" / "final_metrics.json").exists()
    assert isinstance(finals[1], loop.NonFiniteLossError)
    assert "member bad: non-finite value at step" in str(finals[1])
    assert not (tmp_path / "bad" / "final_metrics.json").exists()


def test_configs_that_differ_outside_the_population_fields_are_refused():
    configs = _members(loss__beta_prime=[1.0, 0.1], batch_size=[4, 8])
    with pytest.raises(ValueError, match="batch_size: 4 vs 8"):
        population.check_population(configs)
    same = _members(seed=[0, 3], loss__lambda_heat=[0.01, 1.0])
    population.check_population(same)
    assert population.shared_key(same[0]) == population.shared_key(same[1])
    assert population.shared_key(same[0]) != population.shared_key(configs[1])


def test_a_population_refuses_the_device_augmentation_and_writes_nothing(tmp_path):
    configs = _members(seed=[0, 1], data__augment_on=["device"] * 2,
                       data__decoded_cache=[True] * 2)
    with pytest.raises(NotImplementedError, match="augment_on='device' is for single runs"):
        population_loop.train_population(configs, [tmp_path / "a", tmp_path / "b"],
                                         tmp_path / "pop", functions=standins.FUNCTIONS)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("members, shape", [(2, (2, 1)), (3, (1, 2)), (4, (2, 1)), (1, (1, 2))])
def test_population_mesh_splits_members_then_data(members, shape):
    mesh = sharding.make_population_mesh(members)
    assert mesh.axis_names == ("members", "data") and mesh.devices.shape == shape


@pytest.mark.slow   # ~4 min on 2 loaded cores: compiles the real S4 step twice
def test_the_real_s4_step_vmapped_equals_unbatched_steps():
    """The project's model and objective (the pooled EMD under vmap), one step, K = 2.

    The forward terms agree to float rounding (vmapped convolutions are grouped ones); the
    EMD's auction within its ε (float-level differences in the decoded clouds may change its
    bidding order). Later steps are not compared: Adam's first updates amplify float noise
    (the single run itself, on 1 vs 2 devices, differs by a third in grad_norm at step 3).
    """
    from model_configs import tiny_config

    from handvae.data import spec
    from handvae.models import vae
    configs = [tiny_config("RC2CHP_poe") for _ in range(2)]
    for config in configs:
        config.loss.emd_max_iterations = 0     # converged solves: within ε of the optimum
    configs[1].loss.lambda_cloud, configs[1].optimizer.lr = 2.0, 3e-3
    configs[1].loss.beta_max = 1e-2
    model = vae.build_model(configs[0].model)
    batch = spec.dummy_batch(4, 32, 64, 8, seed=0)
    mesh = sharding.make_population_mesh(2)
    state = population.place_members(population.create_population_state(configs, model), mesh)
    hypers = population.place_members(population.member_hypers(configs), mesh)
    active = population.place_members(np.ones(2, bool), mesh)
    step = population.make_population_train_step(configs[0], mesh)
    state, metrics = step(state, population.place_batch(batch, mesh, shared_batch=True),
                          hypers, active)
    single_mesh = sharding.make_mesh()
    for k, config in enumerate(configs):
        alone = sharding.replicate(create_train_state(config, model), single_mesh)
        alone, alone_metrics = step_lib.make_train_step(config, single_mesh)(
            alone, sharding.shard_batch(batch, single_mesh))
        for name, value in alone_metrics.items():
            rel = (1e-3 if name.endswith("_emd") else 1e-2 if name == "grad_norm"
                   else 5e-5 if name == "beta" else 1e-5)   # β: optax's own float32 rounding
            assert float(metrics[name][k]) == pytest.approx(float(value), rel=rel), name
        member = population.as_single_run_state(population.member_state(state, k), config)
        assert jax.tree.structure(member.opt_state) == jax.tree.structure(alone.opt_state)
        assert int(member.opt_state[1].count) == int(alone.opt_state[1].count) == 1


def test_beta_at_matches_the_optax_schedules():
    from handvae.training import schedules
    for anneal in ("linear", "log"):
        for low, high, steps in ((1e-5, 1e-3, 10), (1e-3, 1e-5, 7), (2e-4, 2e-4, 3),
                                 (1e-5, 1e-3, 0)):
            optax_beta = schedules.beta_schedule(low, high, steps, anneal)
            for step in range(-1, 2 * steps + 3):
                assert float(schedules.beta_at(jnp.asarray(step), low, high, steps, anneal)) \
                    == pytest.approx(float(optax_beta(step)), rel=2e-5)
