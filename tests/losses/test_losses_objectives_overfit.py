"""Every strategy overfits 4 synthetic samples: the loss falls by a large factor (slow)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from model_configs import tiny_model_config
from handvae.losses import EMDOptions, LossWeights
from handvae.models import STRATEGIES, build_model, get_strategy, init_variables
from handvae.training.step import apply_and_loss

STEPS = 300


def _tiny_config(strategy):
    return tiny_model_config(strategy, latent_dim=16, resnet_width=8, respel_width=16,
                             pose_hidden=64, folding_hidden=64, heatmap_width=32)


def synthetic_samples(num=4, seed=0):
    """Poses, clouds sampled around their joints, smooth heat maps, and random images."""
    rng = np.random.default_rng(seed)
    pose = rng.normal(0, 1, (num, 21, 3)).astype(np.float32)
    pose[:, 12] = 0.0
    joints = rng.integers(0, 21, (num, 64))
    cloud = (np.take_along_axis(pose, joints[..., None], axis=1)
             + rng.normal(0, 0.05, (num, 64, 3))).astype(np.float32)
    centres = rng.uniform(1, 7, (num, 1, 1, 21, 2))
    yy, xx = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    grid = np.stack([xx, yy], -1)[None, :, :, None, :]
    heatmaps = np.exp(-np.sum((grid - centres) ** 2, -1) / 2).astype(np.float32)
    return {"rgb": rng.normal(0, 1, (num, 32, 32, 3)).astype(np.float32), "pose": pose,
            "cloud": cloud, "heatmaps": heatmaps, "labelled": np.ones((num,), np.float32)}


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_overfits_four_samples(strategy):
    model = build_model(_tiny_config(strategy))
    batch = {k: jnp.asarray(v) for k, v in synthetic_samples().items()}
    variables = init_variables(model, jax.random.key(0), batch)
    weights = LossWeights(lambda_heat=0.01, lambda_cloud=1.0, beta=1e-4, beta_prime=1e-2)
    tx = optax.adam(1e-3)

    @functools.partial(jax.jit, donate_argnums=(0, 1, 2))
    def step(params, batch_stats, opt_state, rng):
        grad_fn = jax.value_and_grad(
            lambda p: apply_and_loss(model.apply, p, batch_stats, batch, rng, weights,
                                     spec=get_strategy(strategy), train=True,
                                     emd=EMDOptions(1e-2, 1000)), has_aux=True)
        (loss, (_, new_stats)), grads = grad_fn(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_stats, opt_state, loss

    params, stats = variables["params"], variables["batch_stats"]
    opt_state = tx.init(params)
    losses = []
    for i in range(STEPS):
        params, stats, opt_state, loss = step(params, stats, opt_state, jax.random.key(i))
        losses.append(float(loss))
    first, last = np.mean(losses[:5]), np.mean(losses[-10:])
    print(f"{strategy}: loss {first:.4g} -> {last:.4g} ({first / last:.1f}x) in {STEPS} steps")
    assert np.all(np.isfinite(losses))
    assert last < first / 10, (strategy, first, last)
