"""HandVAE: strategy registry, per-strategy modules and outputs, inference helpers, S4 fusion."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs.common import get_base_config
from model_configs import tiny_model_config
from handvae.data.spec import dummy_batch
from handvae.models import (STRATEGIES, HandVAE, build_model, decode_cloud, encode_rgb,
                            init_variables, interpolate_latents, predict_pose)
from handvae.models.registry import get_strategy
from handvae.ops.gaussian import product_of_experts

KEY = jax.random.key(0)
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
EXPECTED_MODULES = {
    "R2P": {"rgb_encoder", "pose_decoder"},
    "R2HP": {"rgb_encoder", "pose_decoder", "heatmap_decoder"},
    "R2CP": {"rgb_encoder", "pose_decoder", "cloud_decoder"},
    "R2CHP": {"rgb_encoder", "pose_decoder", "heatmap_decoder", "cloud_decoder"},
    "RC2CHP_kl": {"rgb_encoder", "joint_encoder", "pose_decoder", "heatmap_decoder",
                  "cloud_decoder"},
    "RC2CHP_poe": {"rgb_encoder", "cloud_encoder", "pose_decoder", "heatmap_decoder",
                   "cloud_decoder"},
}


def tiny_batch(batch_size: int = 2):
    return dummy_batch(batch_size, image_size=32, num_points=64, heatmap_size=8)


def test_strategies_are_the_papers_six():
    assert STRATEGIES == ("R2P", "R2HP", "R2CP", "R2CHP", "RC2CHP_kl", "RC2CHP_poe")
    assert [get_strategy(s).paper for s in STRATEGIES] == ["S1", "S2", "S2", "S2", "S3", "S4"]


@pytest.mark.parametrize("name", ["R2X", "", "r2p", None])
def test_unknown_strategy_fails_listing_known_names(name):
    config = tiny_model_config("R2P")
    config.strategy = name
    with pytest.raises(ValueError, match="known strategies: R2P, R2HP, R2CP, R2CHP, "
                                         "RC2CHP_kl, RC2CHP_poe"):
        build_model(config)


def test_build_model_reads_the_config_fields():
    config = get_base_config().model
    model = build_model(config)
    assert isinstance(model, HandVAE)
    assert (model.strategy, model.latent_dim, model.image_size, model.resnet_width,
            model.respel_width, model.num_points, model.heatmap_size, model.pose_hidden,
            model.folding_hidden) == ("R2P", 64, 256, 64, 64, 256, 64, 128, 512)
    # The references' widths: DC-GAN's 4×4×1024 projection, FoldingNet's 512-unit folds.
    assert (model.heatmap_width, model.respel_blocks, model.poe_prior_expert) == (
        1024, 5, False)
    # A config.json written before heatmap_width existed rebuilds the width it trained with.
    legacy = {k: v for k, v in config.to_dict().items() if k != "heatmap_width"}
    assert build_model(legacy).heatmap_width == 4 * config.resnet_width


def test_model_sizes_are_the_data_sizes_written_once():
    config = get_base_config()
    config.data.image_size, config.data.num_points, config.data.heatmap_size = 128, 64, 32
    model = build_model(config.model)
    assert (model.image_size, model.num_points, model.heatmap_size) == (128, 64, 32)
    # config.model holds exactly HandVAE's fields (no β, no data-only fields).
    fields = set(HandVAE.__dataclass_fields__) - {"parent", "name"}
    assert set(config.model) == fields


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_builds_exactly_its_modules_and_decodes_every_source(strategy):
    model = build_model(tiny_model_config(strategy))
    batch = tiny_batch()

    def run():
        variables = model.init(KEY, batch["rgb"], batch["cloud"], KEY, train=False)
        return variables, model.apply(variables, batch["rgb"], batch["cloud"], KEY, train=True,
                                      mutable=["batch_stats"])[0]

    variables, outputs = jax.eval_shape(run)
    assert set(variables["params"]) == EXPECTED_MODULES[strategy]
    spec = get_strategy(strategy)
    assert set(outputs["latents"]) == set(outputs["recon"]) == set(spec.sources)
    for source in spec.sources:
        assert {k: v.shape for k, v in outputs["latents"][source].items()} == {
            "mu": (2, 8), "logvar": (2, 8), "z": (2, 8)}
        shapes = {k: v.shape for k, v in outputs["recon"][source].items()}
        expected = {"pose": (2, 21, 3), "heatmaps": (2, 8, 8, 21), "cloud": (2, 64, 3)}
        assert shapes == {t: expected[t] for t in spec.targets}


def test_paper_size_parameter_counts():
    counts = {}
    for strategy in ("R2P", "RC2CHP_kl", "RC2CHP_poe"):
        model = build_model(_with_strategy(strategy))
        batch = dummy_batch(1, image_size=256, num_points=256, heatmap_size=64)
        shapes = jax.eval_shape(lambda: model.init(KEY, batch["rgb"], batch["cloud"], KEY,
                                                   train=False))
        counts[strategy] = {k: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(v))
                            for k, v in shapes["params"].items()}
    trunk = 11_176_512
    assert counts["R2P"]["rgb_encoder"] == trunk + 2 * (512 * 64 + 64)
    # S3's joint encoder has its own ResNet-18 and ResPEL trunks.
    assert counts["RC2CHP_kl"]["joint_encoder"] > trunk
    assert counts["RC2CHP_poe"]["cloud_encoder"] < 100_000


def _with_strategy(strategy):
    config = get_base_config().model
    config.strategy = strategy
    return config


@pytest.fixture(scope="module")
def s4():
    model = build_model(tiny_model_config("RC2CHP_poe"))
    batch = tiny_batch()
    variables = init_variables(model, KEY, batch)
    return model, variables, batch


def test_init_variables_gives_params_and_batch_stats(s4):
    _, variables, _ = s4
    assert set(variables) == {"params", "batch_stats"}
    assert set(variables["params"]) == EXPECTED_MODULES["RC2CHP_poe"]
    assert "rgb_encoder" in variables["batch_stats"]


def test_s4_fusion_equals_product_of_experts(s4):
    model, variables, batch = s4
    encode = jax.jit(functools.partial(model.apply, method=HandVAE.encode, train=False),
                     compiler_options=FAST_COMPILE)
    posteriors = encode(variables, batch["rgb"], batch["cloud"])
    mu, logvar = product_of_experts(jnp.stack([posteriors["R"][0], posteriors["C"][0]]),
                                    jnp.stack([posteriors["R"][1], posteriors["C"][1]]))
    np.testing.assert_allclose(posteriors["RC"][0], mu, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(posteriors["RC"][1], logvar, rtol=1e-6, atol=1e-6)
    # The fused variance is smaller than either expert's.
    assert np.all(posteriors["RC"][1] < np.minimum(posteriors["R"][1], posteriors["C"][1]))


def test_s4_prior_expert_option_adds_the_standard_normal_expert(s4):
    """config.model.poe_prior_expert: q ∝ p(z) q(z|x) q(z|w) (Sec. 3.2's text)."""
    model, variables, batch = s4
    with_prior = model.clone(poe_prior_expert=True)
    encode = jax.jit(functools.partial(with_prior.apply, method=HandVAE.encode, train=False),
                     compiler_options=FAST_COMPILE)
    posteriors = encode(variables, batch["rgb"], batch["cloud"])
    (mu_r, lv_r), (mu_c, lv_c) = posteriors["R"], posteriors["C"]
    precision = 1.0 + jnp.exp(-lv_r) + jnp.exp(-lv_c)  # the prior's precision is 1
    np.testing.assert_allclose(posteriors["RC"][1], -jnp.log(precision), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(posteriors["RC"][0],
                               (mu_r * jnp.exp(-lv_r) + mu_c * jnp.exp(-lv_c)) / precision,
                               rtol=1e-5, atol=1e-5)
    config = tiny_model_config("RC2CHP_poe", poe_prior_expert=True)
    assert build_model(config).poe_prior_expert is True


def test_predict_pose_is_rgb_mean_through_pose_decoder_whatever_the_strategy(s4):
    model, variables, batch = s4
    predict = jax.jit(functools.partial(predict_pose, model), compiler_options=FAST_COMPILE)
    pose = predict(variables, batch["rgb"])
    assert pose.shape == (2, 21, 3)
    np.testing.assert_array_equal(pose, predict(variables, batch["rgb"]))  # no sampling
    mu, logvar = encode_rgb(model, variables, batch["rgb"])
    assert mu.shape == logvar.shape == (2, 8)
    manual = model.apply(variables, mu, method=lambda m, z: m.pose_decoder(z))
    np.testing.assert_allclose(pose, manual, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"rgb must be \[B, 32, 32, 3\]"):
        predict(variables, batch["rgb"][..., :2])


def test_decode_cloud_and_interpolation(s4):
    model, variables, _ = s4
    z = interpolate_latents(jnp.zeros(8), jnp.ones(8), 5)
    np.testing.assert_allclose(z[:, 0], [0.0, 0.25, 0.5, 0.75, 1.0], rtol=1e-6)
    np.testing.assert_allclose(z[0], np.zeros(8))
    np.testing.assert_allclose(z[-1], np.ones(8))
    clouds = decode_cloud(model, variables, z)
    assert clouds.shape == (5, 64, 3) and np.all(np.isfinite(clouds))
    with pytest.raises(ValueError, match="must both be"):
        interpolate_latents(jnp.zeros(8), jnp.zeros(7), 3)
    with pytest.raises(ValueError, match="at least 2"):
        interpolate_latents(jnp.zeros(8), jnp.zeros(8), 1)


def test_decode_cloud_needs_a_cloud_decoder():
    model = build_model(tiny_model_config("R2P"))
    with pytest.raises(ValueError, match="R2P has no point-cloud decoder; only R2CP"):
        jax.eval_shape(lambda: model.init(KEY, jnp.zeros((1, 8)), method=HandVAE.decode_cloud))


def test_cloud_strategies_need_a_cloud():
    model = build_model(tiny_model_config("RC2CHP_kl"))
    batch = tiny_batch()
    with pytest.raises(ValueError, match="encodes the point cloud"):
        jax.eval_shape(lambda: model.init(KEY, batch["rgb"], None, KEY, train=False))
    with pytest.raises(ValueError, match=r"cloud must be \[B, N, 3\]"):
        jax.eval_shape(lambda: model.init(KEY, batch["rgb"], batch["cloud"][..., :2], KEY,
                                          train=False))


def test_logvar_bias_init_sets_every_encoder_head(s4):
    """config.model.logvar_bias_init: the initial bias of each log σ² layer (default 0)."""
    model, variables, batch = s4
    assert model.logvar_bias_init == 0.0
    narrow = model.clone(logvar_bias_init=-4.0)
    params = init_variables(narrow, jax.random.key(0), batch)["params"]
    heads = {name: params[name]["head"]["logvar"]["bias"] for name in
             ("rgb_encoder", "cloud_encoder")}
    for name, bias in heads.items():
        np.testing.assert_array_equal(bias, np.full_like(bias, -4.0), err_msg=name)
    np.testing.assert_array_equal(variables["params"]["rgb_encoder"]["head"]["logvar"]["bias"],
                                  0.0)
    assert build_model(tiny_model_config("RC2CHP_poe", logvar_bias_init=-2)).logvar_bias_init \
        == -2.0
