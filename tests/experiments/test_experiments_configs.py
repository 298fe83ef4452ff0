"""Every experiment config loads with its arguments and sets what its docstring promises."""

import importlib

import pytest

from experiments.configs import common

CONFIGS = ("s1_r2p", "s2", "s3_kl", "s4_poe", "weak", "demo")


def _get(name, arg=None):
    return importlib.import_module(f"experiments.configs.{name}").get_config(arg)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_loads_and_documents_its_command(name):
    module = importlib.import_module(f"experiments.configs.{name}")
    assert "python -m experiments.train" in module.__doc__
    assert "Expected result" in module.__doc__
    config = module.get_config()
    assert config.batch_size % 2 == 0 and config.num_train_steps > 0
    assert set(common.get_base_config().keys()) == set(config.keys())


@pytest.mark.parametrize("name,arg,strategy", [
    ("s1_r2p", "dataset=stb", "R2P"), ("s2", "decoders=hp", "R2HP"),
    ("s2", "decoders=cp,dataset=synthetic", "R2CP"), ("s2", None, "R2CHP"),
    ("s3_kl", "stb", "RC2CHP_kl"), ("s4_poe", "dataset=rhd", "RC2CHP_poe"),
    ("weak", "labelled=0.05", "RC2CHP_poe"), ("demo", "strategy=R2P", "R2P")])
def test_strategy_and_dataset_arguments(name, arg, strategy):
    config = _get(name, arg)
    assert config.model.strategy == strategy
    if arg and "stb" in arg:
        assert config.data.dataset == "stb"


def test_paper_defaults():
    config = _get("s4_poe")
    assert config.optimizer.lr == 1e-4 and config.batch_size == 32
    assert config.model.latent_dim == 64
    assert (config.loss.lambda_heat, config.loss.lambda_cloud) == (0.01, 1.0)
    assert (config.loss.beta_min, config.loss.beta_max, config.loss.beta_prime) == (
        1e-5, 1e-3, 1.0)
    # The references' decoder widths; S4 without the prior expert (Eqs. 5-6).
    assert (config.model.heatmap_width, config.model.folding_hidden) == (1024, 512)
    assert config.model.poe_prior_expert is False
    assert len(config.optimizer.lr_boundaries) == 2 and config.optimizer.lr_decay == 0.1


def test_weak_supervision_fraction():
    assert _get("weak", "labelled=0.25").data.labelled_fraction == 0.25
    with pytest.raises(ValueError, match="labelled"):
        _get("weak", "labelled=1.5")


def test_demo_is_small_and_consistent():
    config = _get("demo", "strategy=RC2CHP_kl,steps=100")
    assert config.data.dataset == "synthetic" and config.num_train_steps == 100
    assert config.data.image_size == config.model.image_size <= 64
    assert config.data.heatmap_size == config.model.heatmap_size
    assert config.data.num_points == config.model.num_points
    assert config.model.resnet_width < 64


@pytest.mark.parametrize("name,arg", [("s1_r2p", "tiny"), ("s2", "decoders=hp,tiny=true"),
                                      ("s3_kl", "synthetic,tiny"), ("s4_poe", "tiny"),
                                      ("demo", "strategy=R2P,tiny")])
def test_tiny_argument_shrinks_every_config(name, arg):
    config = _get(name, arg)
    assert (config.data.image_size, config.data.num_points, config.data.heatmap_size) == (
        32, 64, 8)
    assert config.model.latent_dim == 8 and config.batch_size == 4
    assert config.num_train_steps == 6
    assert _get(name, arg.replace("tiny=true", "").replace("tiny", "").strip(",") or None
                ).data.image_size > 32


def test_each_size_is_written_once():
    """The model's sizes are references to config.data's: one override sets both."""
    config = _get("s4_poe")
    config.data.image_size, config.data.num_points, config.data.heatmap_size = 128, 32, 16
    assert (config.model.image_size, config.model.num_points, config.model.heatmap_size) == (
        128, 32, 16)
    for field in ("beta_min", "beta_max", "beta_anneal_steps", "beta_anneal", "beta_prime"):
        assert field in config.loss and field not in config.model


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="decoders"):
        _get("s2", "decoders=xyz")
    with pytest.raises(ValueError, match="unknown key 'datset'"):
        _get("s4_poe", "datset=rhd")
    with pytest.raises(ValueError, match="dataset must be one of"):
        _get("s1_r2p", "dataset=mnist")


@pytest.mark.parametrize("steps", [1, 2, 3, 1500])
def test_demo_lr_boundaries_are_valid_for_any_run_length(steps):
    from experiments.configs import demo
    from handvae.training import schedules

    config = demo.get_config(f"steps={steps}")
    first, second = config.optimizer.lr_boundaries
    assert 0 < first < second
    schedules.learning_rate_schedule(config.optimizer.lr, config.optimizer.lr_boundaries)


@pytest.mark.parametrize("steps", [1, 2, 9, 40])
def test_demo_tiny_honours_the_steps_argument(steps):
    """``demo.py:steps=N,tiny`` trains N steps (tiny sizes) on a schedule that fits N."""
    from experiments.configs import demo
    from handvae.training import schedules

    for arg in (f"steps={steps},tiny", f"tiny,steps={steps}"):
        config = demo.get_config(arg)
        assert config.num_train_steps == steps and config.batch_size == 4
        assert all(0 < b <= steps for b in config.optimizer.lr_boundaries)
        assert 1 <= config.loss.beta_anneal_steps <= max(1, steps)
        schedules.learning_rate_schedule(config.optimizer.lr, config.optimizer.lr_boundaries)
    assert demo.get_config("tiny").num_train_steps == 6  # tiny alone: its own 6 steps
