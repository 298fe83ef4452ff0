"""Chamfer distance (Eq. 8): hand-worked values, a brute-force numpy oracle, masks, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from handvae import losses


def _brute_force_chamfer(p, q, squared=False):
    """One example, explicit Python loops."""
    def directed(a, b):
        total = 0.0
        for x in a:
            best = min(float(np.sum((x - y) ** 2)) for y in b)
            total += best if squared else np.sqrt(best)
        return total / len(a)
    return directed(p, q) + directed(q, p)


def test_chamfer_by_hand():
    p = jnp.array([[[0.0, 0.0, 0.0]]])
    q = jnp.array([[[3.0, 4.0, 0.0]]])
    np.testing.assert_allclose(losses.chamfer_distance(p, q), [10.0])  # 5 + 5
    np.testing.assert_allclose(losses.chamfer_distance(p, q, squared=True), [50.0])
    # p = {0, e_x}, q = {0}: p→q mean(0, 1) = 0.5; q→p 0.
    p2 = jnp.array([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    np.testing.assert_allclose(losses.chamfer_distance(p2, p[:, :1] * 0), [0.5])


@pytest.mark.parametrize("squared", [False, True])
def test_chamfer_matches_brute_force_loop_batched(squared):
    rng = np.random.default_rng(0)
    p = rng.normal(size=(3, 7, 3)).astype(np.float32)
    q = rng.normal(size=(3, 5, 3)).astype(np.float32)
    got = losses.chamfer_distance(p, q, squared=squared)
    want = [_brute_force_chamfer(p[b], q[b], squared) for b in range(3)]
    assert got.shape == (3,)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_chamfer_jit_and_symmetry():
    rng = np.random.default_rng(1)
    p = rng.normal(size=(2, 6, 3)).astype(np.float32)
    q = rng.normal(size=(2, 9, 3)).astype(np.float32)
    jitted = jax.jit(losses.chamfer_distance, static_argnames="squared")
    np.testing.assert_allclose(jitted(p, q), losses.chamfer_distance(p, q), rtol=1e-6)
    np.testing.assert_allclose(jitted(p, q), jitted(q, p), rtol=1e-6)


def test_chamfer_masks_equal_unpadded_clouds():
    rng = np.random.default_rng(2)
    p = rng.normal(size=(2, 6, 3)).astype(np.float32)
    q = rng.normal(size=(2, 4, 3)).astype(np.float32)
    far = np.full((2, 3, 3), 1e3, np.float32)   # padding that would dominate if used
    p_padded = np.concatenate([p, far], axis=1)
    q_padded = np.concatenate([q, -far], axis=1)
    p_mask = np.concatenate([np.ones((2, 6)), np.zeros((2, 3))], axis=1)
    q_mask = np.concatenate([np.ones((2, 4)), np.zeros((2, 3))], axis=1).astype(bool)
    got = losses.chamfer_distance(p_padded, q_padded, p_mask=p_mask, q_mask=q_mask)
    np.testing.assert_allclose(got, losses.chamfer_distance(p, q), rtol=1e-5)


def test_chamfer_gradients():
    rng = np.random.default_rng(3)
    p = jnp.asarray(rng.normal(size=(2, 5, 3)))
    q = jnp.asarray(rng.normal(size=(2, 4, 3)))
    for squared in (False, True):
        check_grads(lambda p, q: losses.chamfer_distance(p, q, squared=squared), (p, q),
                    order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


def test_chamfer_finite_gradient_on_degenerate_clouds():
    rng = np.random.default_rng(4)
    p = jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32)
    duplicated = p.at[:, 1].set(p[:, 0])   # duplicate points
    for q in (p, duplicated):                # coincident clouds: distance 0 everywhere
        value, grad = jax.value_and_grad(lambda x: losses.chamfer_distance(x, q).sum())(p)
        assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(losses.chamfer_distance(p, p), [0.0, 0.0], atol=1e-7)
    np.testing.assert_array_equal(jax.grad(lambda x: losses.chamfer_distance(x, p).sum())(p), 0)


@pytest.mark.parametrize("p_shape,q_shape,match", [
    ((2, 5), (2, 5, 3), "p must have rank 3"),
    ((2, 5, 2), (2, 5, 3), r"p must have shape \[B, N, 3\]"),
    ((2, 5, 3), (3, 5, 3), "same batch size"),
])
def test_chamfer_bad_shapes_raise(p_shape, q_shape, match):
    with pytest.raises(ValueError, match=match):
        losses.chamfer_distance(np.zeros(p_shape, np.float32), np.zeros(q_shape, np.float32))


def test_chamfer_bad_dtype_and_mask_raise():
    with pytest.raises(ValueError, match="q must be a floating-point array"):
        losses.chamfer_distance(np.zeros((1, 2, 3), np.float32), np.zeros((1, 2, 3), np.int32))
    with pytest.raises(ValueError, match=r"p_mask must have shape \(1, 2\)"):
        losses.chamfer_distance(np.zeros((1, 2, 3)), np.zeros((1, 2, 3)), p_mask=np.ones(2))


def test_pairwise_squared_distances_are_explicit_differences():
    p = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 3))
    q = jnp.concatenate([p[:, :2], jax.random.normal(jax.random.PRNGKey(1), (2, 4, 3))], 1)
    d2 = losses.pairwise_squared_distances(p, q)
    assert d2.shape == (2, 5, 6)
    expected = np.sum((np.asarray(p)[:, :, None] - np.asarray(q)[:, None]) ** 2, axis=-1)
    np.testing.assert_allclose(d2, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(d2[:, [0, 1], [0, 1]], 0.0)   # coincident points: exact 0
