"""The trainer with ``data.augment_on="device"``: raw rows in, a few steps, an exact resume."""

import jax
import numpy as np
import pytest

import training_standins as standins
from handvae.data import device_augment
from handvae.training import checkpoint as checkpoint_lib
from handvae.training import loop, sharding
from handvae.training.state import create_train_state


def _config(data_dir, cache_dir, steps):
    config = standins.tiny_config()
    config.data.data_dir = data_dir
    config.data.decoded_cache, config.data.decoded_cache_dir = True, cache_dir
    config.data.augment_on = "device"
    config.num_train_steps = steps
    return config


def _state(workdir):
    config = checkpoint_lib.read_config(str(workdir))
    template = create_train_state(config, standins.build_model(config.model),
                                  init_fn=standins.init_variables)
    checkpoints = checkpoint_lib.Checkpoints(str(workdir), read_only=True, async_save=False)
    try:
        return jax.device_get(checkpoints.restore(
            checkpoint_lib.sharded_abstract(template, sharding.make_mesh()), "latest"))
    finally:
        checkpoints.close()


def test_device_augmentation_trains_and_resumes_exactly(rhd_synthetic_data_dir, tmp_path,
                                                        monkeypatch):
    calls = []
    make = device_augment.make_batch_fn
    monkeypatch.setattr(device_augment, "make_batch_fn",
                        lambda *a, **k: calls.append(1) or make(*a, **k))
    cache = str(tmp_path / "cache")

    def run(workdir, steps):
        return loop.train_and_evaluate(_config(rhd_synthetic_data_dir, cache, steps),
                                       str(workdir), eval_batches=False,
                                       functions=standins.FUNCTIONS)

    final = run(tmp_path / "straight", 4)
    assert calls and np.isfinite(final["train_loss"])
    run(tmp_path / "resumed", 2)
    run(tmp_path / "resumed", 4)          # resumes from the step-2 checkpoint
    straight, resumed = _state(tmp_path / "straight"), _state(tmp_path / "resumed")
    assert int(resumed.step) == 4
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                 straight.params, resumed.params)


def test_device_without_the_decoded_cache_is_refused_naming_the_fix(rhd_synthetic_data_dir,
                                                                    tmp_path):
    config = _config(rhd_synthetic_data_dir, "", 2)
    config.data.decoded_cache = False
    with pytest.raises(ValueError, match="data.decoded_cache=true"):
        loop.train_and_evaluate(config, str(tmp_path / "w"), eval_batches=False,
                                functions=standins.FUNCTIONS)
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_the_real_s4_model_trains_on_device_augmented_rows(rhd_synthetic_data_dir, tmp_path):
    """The demo's S4 (tiny sizes: every decoder, the cloud terms, the auction EMD) on raw rows."""
    from experiments.configs import demo as demo_config
    config = demo_config.get_config("strategy=RC2CHP_poe,tiny,steps=3")
    config.data.data_dir = rhd_synthetic_data_dir
    config.data.decoded_cache, config.data.decoded_cache_dir = True, str(tmp_path / "cache")
    config.data.augment_on = "device"
    config.checkpoint_every = config.eval_every = 3
    final = loop.train_and_evaluate(config, str(tmp_path / "s4"), eval_batches=False)
    assert final["step"] == 3.0 and np.isfinite(final["train_loss"])



def test_a_population_reads_contract_batches_where_auto_resolves_to_the_device(
        rhd_synthetic_data_dir, tmp_path, monkeypatch):
    """On a GPU, ``augment_on="auto"`` with the decoded cache resolves to the device path for a
    single run; a population's step takes contract batches, so its pipeline must stay on the
    host (raw uint8 rows would reach the step un-augmented). The backend is faked here."""
    from handvae.training import population_loop

    monkeypatch.setattr(device_augment, "AUTO_DEVICE_BACKENDS",
                        (jax.default_backend(),))
    configs = []
    for seed in (0, 1):
        config = _config(rhd_synthetic_data_dir, str(tmp_path / "cache"), 2)
        config.data.augment_on, config.seed = "auto", seed
        configs.append(config)
    assert device_augment.resolve_augment_on(configs[0].data) == "device"
    finals = population_loop.train_population(
        configs, [tmp_path / "a", tmp_path / "b"], tmp_path / "pop", eval_batches=False,
        functions=standins.FUNCTIONS)
    assert [f["step"] for f in finals] == [2, 2]
    assert all(np.isfinite(f["train_loss"]) for f in finals)
