"""The EMD under ``jax.vmap`` (a population's member axis): each member equals its own solve."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handvae.losses.emd import auction_assignment, earth_movers_distance


def _clouds(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(np.float32) * 0.05)


@pytest.mark.parametrize("variant", ["pooled", "dense"])
def test_members_emd_equals_unbatched(variant):
    p, q = _clouds((3, 4, 32, 3), 0), _clouds((3, 4, 32, 3), 1)

    def emd(a, b):
        return earth_movers_distance(a, b, variant=variant, epsilon=1e-2,
                                     return_converged=True)

    batched, converged = jax.jit(jax.vmap(emd))(p, q)
    for k in range(3):
        alone, alone_converged = emd(p[k], q[k])
        np.testing.assert_allclose(batched[k], alone, rtol=1e-6)
        np.testing.assert_array_equal(converged[k], alone_converged)
    # One cloud shared by every member (in_axes None), and gradients through the vmap.
    shared, _ = jax.vmap(emd, in_axes=(0, None))(p, q[0])
    np.testing.assert_allclose(shared[2], emd(p[2], q[0])[0], rtol=1e-6)
    grads = jax.vmap(jax.grad(lambda a, b: jnp.sum(emd(a, b)[0])))(p, q)
    np.testing.assert_allclose(grads[1], jax.grad(lambda a, b: jnp.sum(emd(a, b)[0]))(p[1], q[1]),
                               rtol=1e-5, atol=1e-8)


def test_nested_vmap_of_the_assignment_is_each_elements(variant="pooled"):
    cost = jnp.abs(_clouds((2, 3, 5, 16, 16), 2))
    assignment = jax.vmap(jax.vmap(
        lambda c: auction_assignment(c, variant=variant).assignment))(cost)
    for i in range(2):
        for j in range(3):
            np.testing.assert_array_equal(
                assignment[i, j], auction_assignment(cost[i, j], variant=variant).assignment)
