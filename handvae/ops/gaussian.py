"""Diagonal Gaussians: KL divergences, the reparameterisation trick, the product of experts.

These sit in ``handvae.ops`` because the models layer (left of ``handvae.losses``) samples
latents and fuses encoders with them; ``handvae.losses`` re-exports every public name.

Every distribution is a diagonal Gaussian given by its mean ``mu`` and its log-variance
``logvar`` (natural log of σ², so σ = exp(logvar / 2)), both ``[..., D]`` in latent units.
Functions are pure and jit/vmap/grad-safe; divergences are unreduced over the batch (one value
per example, summed over the D latent dimensions).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array


def _check_float(name: str, x: Array, min_ndim: int = 1) -> Array:
    x = jnp.asarray(x)
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s) [..., D], "
                         f"got shape {x.shape}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} must be a floating-point array, got dtype {x.dtype} "
                         f"(shape {x.shape}); cast it with .astype(jnp.float32).")
    return x


def _check_broadcast(**arrays: Array) -> tuple[int, ...]:
    shapes = {k: v.shape for k, v in arrays.items()}
    try:
        return jnp.broadcast_shapes(*shapes.values())
    except ValueError:
        raise ValueError(f"shapes do not broadcast: {shapes}; give every argument the same "
                         "[..., D] shape (or a prior of shape [D]).") from None


@jax.jit
def gaussian_kl(mu_q: Array, logvar_q: Array, mu_p: Array, logvar_p: Array) -> Array:
    """KL(q ‖ p) between diagonal Gaussians, summed over the latent dimension.

    KL = ½ Σ_d [ logvar_p − logvar_q + (exp(logvar_q) + (mu_q − mu_p)²) / exp(logvar_p) − 1 ].

    Args:
      mu_q: [B, D] (or [..., D]) mean of q.
      logvar_q: [B, D] log-variance of q.
      mu_p: [B, D] mean of p (anything broadcastable to q's shape, e.g. [D]).
      logvar_p: [B, D] log-variance of p (broadcastable).

    Returns:
      [B] (the leading shape) KL divergence in nats, ≥ 0; 0 iff q == p.
    """
    mu_q = _check_float("mu_q", mu_q)
    logvar_q = _check_float("logvar_q", logvar_q)
    mu_p = _check_float("mu_p", mu_p)
    logvar_p = _check_float("logvar_p", logvar_p)
    _check_broadcast(mu_q=mu_q, logvar_q=logvar_q, mu_p=mu_p, logvar_p=logvar_p)
    # exp(logvar_q - logvar_p) instead of exp(logvar_q) / exp(logvar_p): no overflow for
    # large log-variances of the same size.
    per_dim = (logvar_p - logvar_q + jnp.exp(logvar_q - logvar_p)
               + jnp.square(mu_q - mu_p) * jnp.exp(-logvar_p) - 1.0)
    return 0.5 * jnp.sum(per_dim, axis=-1)


@jax.jit
def kl_to_standard_normal(mu: Array, logvar: Array) -> Array:
    """KL(N(mu, exp(logvar)) ‖ N(0, I)), summed over the latent dimension.

    KL = ½ Σ_d [ exp(logvar) + mu² − 1 − logvar ]  (the VAE regulariser, Eq. 2–4 of the paper).

    Args:
      mu: [B, D] mean.
      logvar: [B, D] log-variance.

    Returns:
      [B] KL divergence in nats.
    """
    mu = _check_float("mu", mu)
    logvar = _check_float("logvar", logvar)
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got mu {mu.shape} and "
                         f"logvar {logvar.shape}.")
    return 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mu) - 1.0 - logvar, axis=-1)


@jax.jit
def reparameterize(rng: Array, mu: Array, logvar: Array) -> Array:
    """Samples z = mu + exp(logvar / 2) · ε with ε ~ N(0, I), differentiable in mu and logvar.

    Args:
      rng: a PRNG key.
      mu: [B, D] mean.
      logvar: [B, D] log-variance.

    Returns:
      [B, D] sample, same dtype as ``mu``.
    """
    mu = _check_float("mu", mu)
    logvar = _check_float("logvar", logvar)
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got mu {mu.shape} and "
                         f"logvar {logvar.shape}.")
    noise = jax.random.normal(rng, mu.shape, dtype=mu.dtype)
    return mu + jnp.exp(0.5 * logvar) * noise


@functools.partial(jax.jit, static_argnames="prior_expert")
def product_of_experts(mus: Array, logvars: Array, *, prior_expert: bool = False
                       ) -> tuple[Array, Array]:
    """Fuses E diagonal Gaussian experts into their (renormalised) product (Eq. 5–6).

    With precisions T_e = exp(−logvar_e):
      σ² = 1 / Σ_e T_e,   mu = σ² · Σ_e T_e · mu_e.
    Computed in log space (``logsumexp`` of −logvar and softmax weights), so experts with
    log-variances of ±80 neither overflow nor dominate by round-off. An expert of huge variance
    has weight ≈ 0 and changes nothing; the result does not depend on the experts' order.

    Args:
      mus: [E, B, D] means of the experts.
      logvars: [E, B, D] log-variances of the experts.
      prior_expert: also multiply in the prior expert N(0, I) (as in Wu & Goodman's MVAE).

    Returns:
      (mu, logvar), each [B, D].
    """
    mus = _check_float("mus", mus, min_ndim=2)
    logvars = _check_float("logvars", logvars, min_ndim=2)
    if mus.shape != logvars.shape:
        raise ValueError(f"mus and logvars must have the same shape [E, B, D], got mus "
                         f"{mus.shape} and logvars {logvars.shape}.")
    if prior_expert:
        mus = jnp.concatenate([jnp.zeros_like(mus[:1]), mus], axis=0)
        logvars = jnp.concatenate([jnp.zeros_like(logvars[:1]), logvars], axis=0)
    neg_logvars = -logvars
    logvar = -jax.nn.logsumexp(neg_logvars, axis=0)
    weights = jax.nn.softmax(neg_logvars, axis=0)  # T_e / Σ T
    mu = jnp.sum(weights * mus, axis=0)
    return mu, logvar
