"""Encoders and decoders: shapes, parameter counts, ResPEL invariance, FoldingNet grid, errors.

Shapes and parameter counts come from ``jax.eval_shape`` (tracing only, no compilation), so
the full-size ResNet-18 is counted in well under a second.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handvae.models.decoders import (FoldingDecoder, HeatmapDecoder, PoseDecoder, folding_grid,
                                     grid_shape)
from handvae.models.encoders import CloudEncoder, JointEncoder, RGBEncoder
from handvae.models.resnet import ResNet18
from handvae.models.respel import PermutationEquivariantLayer, ResPEL

KEY = jax.random.key(0)
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _count(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def _abstract(module, *args, **kwargs):
    """(param shapes, output shapes) of ``module`` on ``args`` without running it."""
    def run():
        variables = module.init(KEY, *args, **kwargs)
        return variables, module.apply(variables, *args, **kwargs)
    return jax.eval_shape(run)


def test_resnet18_trunk_has_11_2_million_parameters_at_width_64():
    variables, features = _abstract(ResNet18(64), jnp.zeros((1, 256, 256, 3)), train=False)
    # torchvision resnet18 (11,689,512) minus its 512×1000 classifier (513,000).
    assert _count(variables["params"]) == 11_176_512
    assert features.shape == (1, 512)
    # Running statistics (mean, var) are state, not parameters: one pair per BN (scale, bias).
    norm_params = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(variables["params"])
                   if path[-1].key in ("scale", "bias")]
    assert _count(variables["batch_stats"]) == _count(norm_params)


def test_rgb_encoder_shapes_at_paper_size_and_tiny_size():
    variables, (mu, logvar) = _abstract(RGBEncoder(64, 256, 64), jnp.zeros((2, 256, 256, 3)),
                                        train=False)
    assert mu.shape == logvar.shape == (2, 64)
    head = _count(variables["params"]["head"])
    assert head == 2 * (512 * 64 + 64)
    _, (mu, _) = _abstract(RGBEncoder(8, 32, 4), jnp.zeros((3, 32, 32, 3)), train=False)
    assert mu.shape == (3, 8)


@pytest.mark.parametrize("shape", [(2, 32, 32, 1), (2, 48, 48, 3), (32, 32, 3), (2, 32, 16, 3)])
def test_rgb_encoder_rejects_wrong_image_shape_naming_the_expected_one(shape):
    with pytest.raises(ValueError, match=r"rgb must be \[B, 32, 32, 3\]"):
        _abstract(RGBEncoder(8, 32, 4), jnp.zeros(shape), train=False)


def test_pel_is_permutation_equivariant_and_respel_invariant():
    points = jax.random.normal(KEY, (2, 64, 3))
    perm = jax.random.permutation(jax.random.key(1), 64)
    layer = PermutationEquivariantLayer(5)
    encoder = CloudEncoder(latent_dim=8, width=16, num_blocks=5)

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def run(points, permuted):
        lp = layer.init(KEY, points)
        params = encoder.init(KEY, points)
        return (layer.apply(lp, points)[:, perm], layer.apply(lp, permuted),
                encoder.apply(params, points), encoder.apply(params, permuted),
                encoder.apply(params, points + 0.5))

    pel, pel_p, (mu, logvar), (mu_p, logvar_p), (mu_moved, _) = run(points, points[:, perm])
    np.testing.assert_allclose(pel, pel_p, rtol=1e-6, atol=1e-6)
    assert mu.shape == (2, 8)
    np.testing.assert_allclose(mu, mu_p, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logvar, logvar_p, rtol=1e-5, atol=1e-5)
    # ...but it does depend on the points themselves, including where the cloud lies.
    assert not np.allclose(mu, mu_moved, atol=1e-3)


def test_respel_depth_and_width():
    variables, features = _abstract(ResPEL(64, 5), jnp.zeros((1, 256, 3)))
    # input PEL 3→64, then 5 blocks × 2 PELs 64→64 (Γ, Λ and a bias each), LayerNorm 2×64.
    assert _count(variables["params"]) == (2 * 3 * 64 + 64) + 10 * (2 * 64 * 64 + 64) + 2 * 64
    assert features.shape == (1, 64)


@pytest.mark.parametrize("shape", [(2, 64, 2), (64, 3), (2, 64, 3, 1)])
def test_cloud_encoder_rejects_wrong_point_dimension(shape):
    with pytest.raises(ValueError, match=r"cloud must be \[B, N, 3\]"):
        _abstract(CloudEncoder(8, 16, 2), jnp.zeros(shape))


def test_joint_encoder_fuses_both_modalities():
    encoder = JointEncoder(8, 32, 4, 16, 2)
    rgb, cloud = jnp.zeros((2, 32, 32, 3)), jnp.zeros((2, 64, 3))
    variables, (mu, logvar) = _abstract(encoder, rgb, cloud, train=False)
    assert mu.shape == logvar.shape == (2, 8)
    assert set(variables["params"]) == {"rgb_trunk", "cloud_trunk", "head"}
    # The head sees the concatenation [8·resnet_width + respel_width].
    assert variables["params"]["head"]["mu"]["kernel"].shape == (8 * 4 + 16, 8)
    with pytest.raises(ValueError, match="same batch size"):
        _abstract(encoder, rgb, jnp.zeros((3, 64, 3)), train=False)


def test_pose_decoder_shape_and_parameter_count():
    variables, pose = _abstract(PoseDecoder(128), jnp.zeros((5, 64)))
    assert pose.shape == (5, 21, 3)
    assert _count(variables["params"]) == (64 * 128 + 128) + 3 * (128 * 128 + 128) + (128 * 63 + 63)
    with pytest.raises(ValueError, match=r"z must be \[B, D\]"):
        _abstract(PoseDecoder(16), jnp.zeros((5, 2, 64)))


@pytest.mark.parametrize("size", [8, 16, 64])
def test_heatmap_decoder_shapes(size):
    _, maps = _abstract(HeatmapDecoder(size, 32), jnp.zeros((3, 16)), train=False)
    assert maps.shape == (3, size, size, 21)


@pytest.mark.parametrize("size", [4, 20, 48])
def test_heatmap_decoder_rejects_sizes_that_are_not_4_times_a_power_of_two(size):
    with pytest.raises(ValueError, match="heatmap_size must be 4·2\\^k"):
        _abstract(HeatmapDecoder(size, 32), jnp.zeros((3, 16)), train=False)


def test_folding_grid_is_a_fixed_square_grid():
    grid = folding_grid(256)
    assert grid.shape == (256, 2) and grid.dtype == np.float32
    assert grid_shape(256) == (16, 16) and grid_shape(64) == (8, 8) and grid_shape(12) == (3, 4)
    assert len(np.unique(grid[:, 0])) == 16 and len(np.unique(grid[:, 1])) == 16
    assert grid.min() == -1.0 and grid.max() == 1.0
    np.testing.assert_array_equal(grid, folding_grid(256))  # deterministic


def test_folding_decoder_grid_is_not_a_parameter_and_is_shared_by_examples():
    decoder = FoldingDecoder(num_points=64, hidden=16)
    z = jax.random.normal(KEY, (1, 8))
    params = jax.jit(decoder.init, compiler_options=FAST_COMPILE)(KEY, z)
    # Two folds, each Dense(z→16) + Dense(point→16, no bias) + Dense(16→16) + Dense(16→3);
    # the first fold's points are the 2-D grid, the second's the 3-D first fold. No [N, 2] leaf.
    fold = (8 * 16 + 16) + (16 * 16 + 16) + (16 * 3 + 3)
    expected = 2 * fold + 2 * 16 + 3 * 16
    assert _count(params) == expected
    assert all(leaf.shape[0] != 64 for leaf in jax.tree.leaves(params))
    # Same z → same cloud for every example of a batch; other z → another cloud.
    z2 = jnp.concatenate([z, z, z + 1.0])
    cloud = jax.jit(decoder.apply, compiler_options=FAST_COMPILE)(params, z2)
    assert cloud.shape == (3, 64, 3)
    np.testing.assert_array_equal(cloud[0], cloud[1])
    assert not np.allclose(cloud[0], cloud[2])
    # Every grid point gives its own output point.
    assert len(np.unique(np.round(np.asarray(cloud[0]), 5), axis=0)) == 64


def test_decoder_widths_are_the_references_by_default():
    """DC-GAN's generator (4×4×1024, halved per upsampling) and FoldingNet's 512-wide folds."""
    z = jnp.zeros((1, 64))
    heat = jax.eval_shape(lambda: HeatmapDecoder(64).init(jax.random.key(0), z, train=False))
    kernels = {k: v["kernel"].shape for k, v in heat["params"].items() if "kernel" in v}
    assert kernels["project"] == (64, 4 * 4 * 1024)
    assert [kernels[f"deconv{i}"][-1] for i in (1, 2, 3)] == [512, 256, 128]
    assert kernels["output"] == (4, 4, 128, 21)
    fold = jax.eval_shape(lambda: FoldingDecoder(256).init(jax.random.key(0), z))
    for name in ("fold1", "fold2"):
        layers = fold["params"][name]
        assert layers["latent"]["kernel"].shape == (64, 512)
        assert layers["hidden"]["kernel"].shape == (512, 512)
        assert layers["output"]["kernel"].shape == (512, 3)
