"""The one objective (negative_elbo) on every strategy: terms, weighting, weak-supervision
masks, gradient routing.

One jitted function per strategy initialises a tiny model, applies it as the train step does
(``handvae.training.step.apply_and_loss``) and returns the loss, its terms and per-module
gradient sizes; it is called with several ``labelled`` vectors (runtime data, so no
recompilation) to check the normalisation and the zero gradients of unlabelled batches.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model_configs import tiny_config, tiny_model_config
from handvae.data.spec import dummy_batch
from handvae.losses import EMDOptions, LossWeights, negative_elbo
from handvae.models import STRATEGIES, build_model
from handvae.models.registry import get_strategy
from handvae.training import step as step_lib

KEY = jax.random.key(0)
# Tiny shapes run in milliseconds; XLA's optimisation passes are what cost time on 2 cores.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
WEIGHTS = LossWeights(lambda_heat=0.5, lambda_cloud=2.0, beta=0.1, beta_prime=0.7)
EMD = EMDOptions(epsilon=1e-2, max_iterations=500)
# The paper's KL terms, written out independently of the registry (Eqs. 1-4).
PRIOR_KL = {"R2P": ("R",), "R2HP": ("R",), "R2CP": ("R",), "R2CHP": ("R",),
            "RC2CHP_kl": ("RC", "R"), "RC2CHP_poe": ("R", "C")}


# R2HP and R2CP run the same single-encoder objective as R2CHP with fewer decoders; their
# compilations (~10 s each on 2 busy cores) are kept for `pytest -m slow`.
STRATEGY_PARAMS = [pytest.param(s, marks=pytest.mark.slow) if s in ("R2HP", "R2CP") else s
                   for s in STRATEGIES]


def tiny_batch(labelled=(1.0, 1.0)):
    batch = dummy_batch(len(labelled), image_size=32, num_points=64, heatmap_size=8)
    batch["labelled"] = np.asarray(labelled, np.float32)
    return {k: jnp.asarray(v) for k, v in batch.items()}


def _max_abs(tree) -> jax.Array:
    return jnp.max(jnp.stack([jnp.max(jnp.abs(x)) for x in jax.tree.leaves(tree)]))


@functools.lru_cache(maxsize=None)
def _runner(strategy: str):
    model = build_model(tiny_model_config(strategy))

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def run(batch, weights):
        variables = model.init(KEY, batch["rgb"][:1], batch["cloud"][:1], KEY, train=False)

        def loss_fn(params):
            return step_lib.apply_and_loss(model.apply, params, variables["batch_stats"], batch,
                                           KEY, weights, spec=get_strategy(strategy), emd=EMD,
                                           train=True)

        (loss, (terms, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            variables["params"])
        grad_size = {name: _max_abs(g) for name, g in grads.items()}
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        stats_changed = _max_abs(jax.tree.map(jnp.subtract, new_stats,
                                              variables["batch_stats"]))
        return loss, terms, grad_size, finite, stats_changed

    return model, run


def _terms(strategy, labelled):
    _, run = _runner(strategy)
    loss, terms, grads, finite, stats_changed = run(tiny_batch(labelled), WEIGHTS)
    return (float(loss), {k: float(v) for k, v in terms.items()},
            {k: float(v) for k, v in grads.items()}, bool(finite), float(stats_changed))


def _expected_names(strategy):
    spec = get_strategy(strategy)
    names = {"loss"} | {f"kl_{s}" for s in PRIOR_KL[strategy]}
    for source in spec.sources:
        names |= {f"{source}2P"}
        if "heatmaps" in spec.targets:
            names |= {f"{source}2H"}
        if "cloud" in spec.targets:
            names |= {f"{source}2C_chamfer", f"{source}2C_emd", "emd_unconverged_fraction"}
    if strategy == "RC2CHP_kl":
        names |= {"kl_RC_R"}
    return names


@pytest.mark.parametrize("strategy", STRATEGY_PARAMS)
def test_objective_terms_weights_masks_and_gradient_routing(strategy):
    spec = get_strategy(strategy)
    loss, terms, grads, finite, stats_changed = _terms(strategy, (1.0, 1.0))
    assert set(terms) == _expected_names(strategy)
    assert np.isfinite(loss) and finite and loss > 0
    # The loss is the weighted sum of its named terms (Eqs. 2-4 with λ, β, β').
    expected = sum(v for k, v in terms.items() if k.endswith("2P"))
    expected += WEIGHTS.lambda_heat * sum(v for k, v in terms.items() if k.endswith("2H"))
    expected += WEIGHTS.lambda_cloud * sum(v for k, v in terms.items() if "2C_" in k)
    expected += WEIGHTS.beta * sum(terms[f"kl_{s}"] for s in PRIOR_KL[strategy])
    expected += WEIGHTS.beta_prime * terms.get("kl_RC_R", 0.0)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert terms["loss"] == loss
    # BatchNorm statistics move in training mode.
    assert stats_changed > 0
    # Gradient reaches every module the strategy has; absent decoders are never built
    # (S1 has no cloud decoder to touch).
    assert all(g > 0 for g in grads.values()), grads
    assert ("cloud_decoder" in grads) == ("cloud" in spec.targets)
    assert ("heatmap_decoder" in grads) == ("heatmaps" in spec.targets)

    # Supervised terms are means over the labelled examples: with one labelled example each,
    # the two halves add up to twice the mean over both.
    _, first, *_ = _terms(strategy, (1.0, 0.0))
    _, second, *_ = _terms(strategy, (0.0, 1.0))
    for name in terms:
        if name == "loss":
            continue
        supervised = name.endswith(("2P", "2H")) or (
            name.startswith("kl_") and not spec.decodes_cloud)
        if supervised:
            np.testing.assert_allclose(first[name] + second[name], 2 * terms[name], rtol=1e-4)
        else:  # cloud terms and (for cloud strategies) KLs use every example
            np.testing.assert_allclose(first[name], terms[name], rtol=1e-4)


@pytest.mark.parametrize("strategy", STRATEGY_PARAMS)
def test_all_unlabelled_batch_trains_only_the_rc2c_part(strategy):
    spec = get_strategy(strategy)
    _, run = _runner(strategy)
    batch = tiny_batch((0.0, 0.0))
    # Unlabelled rows may carry garbage; it must not leak into the loss or the gradients.
    batch["pose"] = jnp.full_like(batch["pose"], jnp.nan)
    batch["heatmaps"] = jnp.full_like(batch["heatmaps"], jnp.inf)
    loss, terms, grads, finite, _ = run(batch, WEIGHTS)
    assert bool(finite) and np.isfinite(float(loss))
    assert float(grads["pose_decoder"]) == 0.0
    if "heatmaps" in spec.targets:
        assert float(grads["heatmap_decoder"]) == 0.0
    assert all(float(v) == 0.0 for k, v in terms.items() if k.endswith(("2P", "2H")))
    if spec.decodes_cloud:
        assert float(grads["rgb_encoder"]) > 0 and float(grads["cloud_decoder"]) > 0
        for module in ("joint_encoder", "cloud_encoder"):
            if module in grads:  # S3's joint encoder, S4's cloud encoder
                assert float(grads[module]) > 0
    else:  # nothing to learn from an unlabelled example without a cloud decoder
        assert float(loss) == 0.0
        assert all(float(v) == 0.0 for v in grads.values())


def test_registry_records_the_papers_kl_terms():
    for strategy in STRATEGIES:
        spec = get_strategy(strategy)
        assert spec.prior_kl == PRIOR_KL[strategy]
        assert spec.alignment_kl == ((("RC", "R"),) if strategy == "RC2CHP_kl" else ())


def test_missing_batch_entries_are_named():
    batch = tiny_batch()
    for strategy, missing, match in [("RC2CHP_poe", "cloud", "needs 'cloud'"),
                                     ("R2HP", "heatmaps", "no 'heatmaps' entry")]:
        model = build_model(tiny_model_config(strategy))
        variables = jax.eval_shape(lambda m=model: m.init(KEY, batch["rgb"], batch["cloud"], KEY,
                                                          train=False))
        broken = {k: v for k, v in batch.items() if k != missing}
        with pytest.raises(ValueError, match=match):
            jax.eval_shape(lambda p, s, m=model, b=broken, st=strategy: step_lib.apply_and_loss(
                m.apply, p, s, b, KEY, WEIGHTS, spec=get_strategy(st), emd=EMD, train=False),
                variables["params"], variables["batch_stats"])


def test_objective_is_a_function_of_arrays_only():
    """negative_elbo scores given outputs by hand: no model, no config (R2P, one example)."""
    spec = get_strategy("R2P")
    pose = jnp.zeros((1, 21, 3))
    outputs = {"latents": {"R": {"mu": jnp.ones((1, 2)), "logvar": jnp.zeros((1, 2))}},
               "recon": {"R": {"pose": pose.at[0, 0, 0].set(3.0)}}}
    batch = {"rgb": jnp.zeros((1, 4, 4, 3)), "pose": pose, "labelled": jnp.ones((1,))}
    loss, terms = negative_elbo(spec, outputs, batch, WEIGHTS)
    # pose: 3² = 9; KL(N(1, 1) ‖ N(0, 1)) per dimension = ½ · 1² → 1 over 2 dimensions.
    np.testing.assert_allclose(terms["R2P"], 9.0)
    np.testing.assert_allclose(terms["kl_R"], 1.0)
    np.testing.assert_allclose(loss, 9.0 + WEIGHTS.beta * 1.0, rtol=1e-6)


def test_step_options_resolve_the_config_once():
    config = tiny_config("RC2CHP_kl")
    config.loss.lambda_heat, config.loss.lambda_cloud, config.loss.beta_prime = 0.2, 3.0, 0.5
    options = step_lib.step_options_from_config(config)
    assert options.spec == get_strategy("RC2CHP_kl")
    assert options.emd == EMDOptions(config.loss.emd_epsilon, config.loss.emd_max_iterations)
    weights = options.loss_weights(jnp.int32(0))
    assert weights == LossWeights(0.2, 3.0, weights.beta, 0.5)
    np.testing.assert_allclose(weights.beta, config.loss.beta_min, rtol=2e-5)
    np.testing.assert_allclose(options.learning_rate(0), config.optimizer.lr, rtol=1e-6)
    # Only hashable, config-free values reach the jitted step.
    assert not any(hasattr(v, "to_dict") for v in options)


def test_step_options_read_the_emd_variant_and_refuse_an_unknown_one():
    config = tiny_config("R2CP")
    assert step_lib.step_options_from_config(config).emd.variant is None   # "": by backend
    config.loss.emd_variant = "pallas"
    assert step_lib.step_options_from_config(config).emd.variant == "pallas"
    config.loss.emd_variant = "palas"
    with pytest.raises(ValueError, match="config.loss.emd_variant"):
        step_lib.step_options_from_config(config)


def test_emd_convergence_hook_reports_the_unconverged_fraction(monkeypatch):
    """The terms carry emd_unconverged_fraction (over every decoded cloud, from
    earth_movers_distance(..., return_converged=True)); the loss is unchanged by it."""
    from handvae.losses import objectives

    def fake_emd(p, q, *, epsilon, max_iterations, variant=None, return_converged=False,
                 every=True):
        distance = jnp.full((p.shape[0],), 0.5)
        converged = jnp.arange(p.shape[0]) % 4 != 0  # one in four did not converge
        converged = converged | every
        return (distance, converged) if return_converged else distance

    spec = get_strategy("R2CP")
    cloud = jnp.zeros((4, 8, 3))
    outputs = {"latents": {"R": {"mu": jnp.zeros((4, 2)), "logvar": jnp.zeros((4, 2))}},
               "recon": {"R": {"pose": jnp.zeros((4, 21, 3)), "cloud": cloud}}}
    batch = {"rgb": jnp.zeros((4, 4, 4, 3)), "pose": jnp.zeros((4, 21, 3)), "cloud": cloud}
    monkeypatch.setattr(objectives, "earth_movers_distance", fake_emd)
    loss_before, terms = negative_elbo(spec, outputs, batch, WEIGHTS)
    np.testing.assert_allclose(terms["emd_unconverged_fraction"], 0.0)
    monkeypatch.setattr(objectives, "earth_movers_distance",
                        lambda *a, **k: fake_emd(*a, **k, every=False))
    loss, terms = negative_elbo(spec, outputs, batch, WEIGHTS)
    np.testing.assert_allclose(terms["emd_unconverged_fraction"], 0.25)
    np.testing.assert_allclose(terms["R2C_emd"], 0.5)
    np.testing.assert_allclose(loss, loss_before)
