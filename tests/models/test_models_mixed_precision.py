"""Mixed precision: bfloat16 compute, float32 parameters, optimiser state and outputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model_configs import tiny_config
from handvae.data.spec import dummy_batch
from handvae.models import build_model, init_variables, predict_pose
from handvae.training import sharding, state as state_lib, step as step_lib


def _dtypes(tree):
    return {np.dtype(x.dtype).name for x in jax.tree.leaves(tree)}


def _batch(config, batch_size=2):
    return dummy_batch(batch_size, image_size=config.data.image_size,
                       num_points=config.data.num_points,
                       heatmap_size=config.data.heatmap_size, seed=0)


@pytest.mark.parametrize("strategy", ["RC2CHP_poe", "RC2CHP_kl"])
def test_bf16_computes_in_bf16_with_float32_parameters_and_outputs(strategy):
    config = tiny_config(strategy)
    config.model.compute_dtype = "bfloat16"
    model = build_model(config.model)
    batch = _batch(config)
    variables = init_variables(model, jax.random.key(0), batch)
    assert _dtypes(variables) == {"float32"}
    rgb, cloud = jnp.asarray(batch["rgb"]), jnp.asarray(batch["cloud"])

    def forward(variables):
        return model.apply(variables, rgb, cloud, jax.random.key(1), train=True,
                           mutable=["batch_stats"])

    outputs, mutated = jax.jit(forward)(variables)
    assert _dtypes(outputs) == {"float32"}
    assert _dtypes(mutated) == {"float32"}
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(outputs))
    # The convolutions and matmuls themselves run in bfloat16.
    text = jax.jit(forward).lower(variables).as_text()
    assert "bf16" in text and "convolution" in text
    # Same parameters in float32: the same function to bfloat16's precision.
    config.model.compute_dtype = "float32"
    reference = build_model(config.model)
    pose = predict_pose(model, variables, rgb)
    pose32 = predict_pose(reference, variables, rgb)
    assert pose.dtype == jnp.float32
    np.testing.assert_allclose(pose, pose32, atol=0.05 * float(jnp.max(jnp.abs(pose32))) + 1e-3)


def test_unknown_compute_dtype_names_the_field():
    config = tiny_config("R2P")
    config.model.compute_dtype = "float16"
    with pytest.raises(ValueError, match="config.model.compute_dtype"):
        build_model(config.model)


def test_a_bf16_train_step_keeps_parameters_and_adam_state_in_float32():
    config = tiny_config("R2CHP")
    config.model.compute_dtype = "bfloat16"
    mesh = sharding.make_mesh()
    model = build_model(config.model)
    state = sharding.replicate(state_lib.create_train_state(config, model), mesh)
    train_step = step_lib.make_train_step(config, mesh)
    for step in range(2):
        state, metrics = train_step(state, sharding.shard_batch(
            _batch(config, config.batch_size), mesh))
    assert int(state.step) == 2
    assert _dtypes(state.params) == {"float32"}
    assert _dtypes(state.opt_state) <= {"float32", "int32"}
    assert _dtypes(state.batch_stats) == {"float32"}
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert metrics["loss"].dtype == jnp.float32
