"""KL divergences, reparameterisation and the product of experts (Eq. 5–6)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from handvae import losses
from handvae.ops import gaussian


def test_kl_by_hand():
    # KL(N(1, 1) || N(0, 1)) = ½ · 1² = 0.5 per dimension.
    np.testing.assert_allclose(losses.kl_to_standard_normal(jnp.ones((1, 2)), jnp.zeros((1, 2))),
                               [1.0])
    # KL(N(0, 1) || N(0, e²)) = ½ (2 − 0 + e^{-2} − 1).
    got = losses.gaussian_kl(jnp.zeros((1, 1)), jnp.zeros((1, 1)), jnp.zeros(1),
                             jnp.full((1,), 2.0))
    np.testing.assert_allclose(got, [0.5 * (1.0 + np.exp(-2.0))], rtol=1e-6)


def test_kl_batched_jitted_and_consistent():
    rng = np.random.default_rng(0)
    mu, logvar = rng.normal(size=(2, 4, 5)).astype(np.float32)
    standard = jax.jit(losses.kl_to_standard_normal)(mu, logvar)
    general = losses.gaussian_kl(mu, logvar, np.zeros(5, np.float32), np.zeros(5, np.float32))
    assert standard.shape == (4,)
    np.testing.assert_allclose(standard, general, rtol=1e-5)
    np.testing.assert_allclose(losses.gaussian_kl(mu, logvar, mu, logvar), 0.0, atol=1e-6)
    assert np.all(np.asarray(standard) > 0)


def test_kl_matches_monte_carlo():
    rng = np.random.default_rng(1)
    mu_q, mu_p = rng.normal(size=(2, 3))
    logvar_q, logvar_p = rng.normal(scale=0.5, size=(2, 3))
    z = mu_q + np.exp(0.5 * logvar_q) * rng.standard_normal((400_000, 3))

    def log_density(z, mu, logvar):
        return -0.5 * np.sum(np.log(2 * np.pi) + logvar + (z - mu) ** 2 / np.exp(logvar), -1)

    monte_carlo = np.mean(log_density(z, mu_q, logvar_q) - log_density(z, mu_p, logvar_p))
    exact = losses.gaussian_kl(mu_q[None], logvar_q[None], mu_p[None], logvar_p[None])
    np.testing.assert_allclose(exact, [monte_carlo], rtol=0.02, atol=0.01)


def test_kl_gradients_and_zero_variance():
    rng = np.random.default_rng(2)
    mu, logvar = rng.normal(size=(2, 2, 3))
    check_grads(losses.kl_to_standard_normal, (mu, logvar), order=1, rtol=1e-2)
    check_grads(losses.gaussian_kl, (mu, logvar, mu[::-1], logvar[::-1]), order=1, rtol=1e-2)
    # (Near-)zero variance: log-variance −30 still gives finite values and gradients.
    tiny = jnp.full((1, 3), -30.0)
    grads = jax.grad(lambda lv: losses.kl_to_standard_normal(jnp.zeros((1, 3)), lv).sum())(tiny)
    assert np.all(np.isfinite(grads))


def test_reparameterize_statistics_and_gradients():
    mu = jnp.array([[1.0, -2.0]])
    logvar = jnp.log(jnp.array([[0.25, 4.0]]))
    samples = jax.vmap(lambda k: losses.reparameterize(k, mu, logvar))(
        jax.random.split(jax.random.PRNGKey(0), 20_000))[:, 0]
    np.testing.assert_allclose(samples.mean(0), [1.0, -2.0], atol=0.05)
    np.testing.assert_allclose(samples.std(0), [0.5, 2.0], rtol=0.03)
    rng = jax.random.PRNGKey(1)
    d_mu = jax.grad(lambda m: losses.reparameterize(rng, m, logvar).sum())(mu)
    np.testing.assert_allclose(d_mu, 1.0)
    noise = jax.random.normal(rng, mu.shape)
    d_logvar = jax.grad(lambda lv: losses.reparameterize(rng, mu, lv).sum())(logvar)
    np.testing.assert_allclose(d_logvar, 0.5 * jnp.exp(0.5 * logvar) * noise, rtol=1e-5)
    zero_variance = losses.reparameterize(rng, mu, jnp.full_like(mu, -200.0))
    np.testing.assert_allclose(zero_variance, mu)


def test_product_of_experts_closed_form():
    mus = jnp.array([[[1.0]], [[3.0]]])                       # E=2, B=1, D=1
    logvars = jnp.log(jnp.array([[[1.0]], [[3.0]]]))          # precisions 1 and 1/3
    mu, logvar = losses.product_of_experts(mus, logvars)
    np.testing.assert_allclose(jnp.exp(logvar), [[0.75]], rtol=1e-6)        # 1 / (4/3)
    np.testing.assert_allclose(mu, [[0.75 * (1.0 + 3.0 / 3.0)]], rtol=1e-6)  # 1.5
    # With the N(0, 1) prior expert: precisions 1, 1, 1/3.
    mu, logvar = losses.product_of_experts(mus, logvars, prior_expert=True)
    np.testing.assert_allclose(jnp.exp(logvar), [[3.0 / 7.0]], rtol=1e-6)
    np.testing.assert_allclose(mu, [[3.0 / 7.0 * 2.0]], rtol=1e-6)


def test_product_of_experts_symmetric_batched_and_jitted():
    rng = np.random.default_rng(3)
    mus = rng.normal(size=(3, 4, 5)).astype(np.float32)
    logvars = rng.normal(size=(3, 4, 5)).astype(np.float32)
    mu, logvar = jax.jit(losses.product_of_experts)(mus, logvars)
    assert mu.shape == logvar.shape == (4, 5)
    for order in ([2, 0, 1], [1, 2, 0]):
        mu_p, logvar_p = losses.product_of_experts(mus[order], logvars[order])
        np.testing.assert_allclose(mu_p, mu, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(logvar_p, logvar, rtol=1e-5, atol=1e-6)
    precision = np.exp(-logvars)
    np.testing.assert_allclose(mu, (precision * mus).sum(0) / precision.sum(0), rtol=1e-5)
    check_grads(lambda m, lv: losses.product_of_experts(m, lv, prior_expert=True), (mus, logvars),
                order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


def test_product_of_experts_ignores_a_huge_variance_expert():
    rng = np.random.default_rng(4)
    mus = rng.normal(size=(2, 3, 4)).astype(np.float32)
    logvars = rng.normal(size=(2, 3, 4)).astype(np.float32)
    vague_mu = 100.0 * np.ones((1, 3, 4), np.float32)
    vague_logvar = np.full((1, 3, 4), 60.0, np.float32)          # σ² = e^60
    with_vague = losses.product_of_experts(np.concatenate([mus, vague_mu]),
                                           np.concatenate([logvars, vague_logvar]))
    without = losses.product_of_experts(mus, logvars)
    for a, b in zip(with_vague, without):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    # A single expert is returned unchanged; extreme log-variances stay finite.
    mu, logvar = losses.product_of_experts(mus[:1], logvars[:1])
    np.testing.assert_allclose(mu, mus[0], rtol=1e-6)
    np.testing.assert_allclose(logvar, logvars[0], rtol=1e-6)
    extreme = losses.product_of_experts(mus, np.stack([np.full((3, 4), -80.0),
                                                       np.full((3, 4), 80.0)]).astype(np.float32))
    np.testing.assert_allclose(extreme[0], mus[0], rtol=1e-6)       # the precise expert wins
    grads = jax.grad(lambda lv: losses.product_of_experts(mus, lv)[0].sum())(
        np.full((2, 3, 4), -80.0, np.float32))
    assert np.all(np.isfinite(grads))


def test_gaussian_bad_inputs_raise():
    with pytest.raises(ValueError, match="mus and logvars must have the same shape"):
        gaussian.product_of_experts(np.zeros((2, 3, 4)), np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match="mus must have at least 2"):
        gaussian.product_of_experts(np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="mu must be a floating-point array"):
        gaussian.kl_to_standard_normal(np.zeros((2, 3), np.int32), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="shapes do not broadcast"):
        gaussian.gaussian_kl(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="mu and logvar must have the same shape"):
        gaussian.reparameterize(jax.random.PRNGKey(0), np.zeros((2, 3)), np.zeros((2, 4)))
