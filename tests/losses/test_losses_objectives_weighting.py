"""How a weak batch's unlabelled rows weigh (``unlabelled_weighting``): ``"pooled"`` averages
each cloud term and KL over every row; ``"separate"`` (Sec. 5.3 read literally) is the
labelled rows' supervised objective plus the unlabelled rows' mean. Hand-made outputs, so
each expected value is computed here independently of the code."""

import jax.numpy as jnp
import numpy as np
import pytest

from handvae.losses import EMDOptions, LossWeights, negative_elbo
from handvae.models.registry import get_strategy
from handvae.training import step as step_lib
from model_configs import tiny_config

B, N, D = 4, 8, 5
SPEC = get_strategy("RC2CHP_poe")
EMD = EMDOptions(epsilon=1e-2, max_iterations=400)
# Chamfer and the KLs only: the EMD term is not needed to tell the weightings apart.
WEIGHTS = LossWeights(lambda_heat=0.0, lambda_cloud=1.0, beta=1.0, beta_prime=0.0)


def _outputs_and_batch(labelled):
    rng = np.random.default_rng(0)
    latents = {k: {"mu": jnp.asarray(rng.normal(size=(B, D)), jnp.float32),
                   "logvar": jnp.asarray(rng.normal(size=(B, D)) * 0.3, jnp.float32)}
               for k in ("R", "C", "RC")}
    recon = {s: {"pose": jnp.asarray(rng.normal(size=(B, 21, 3)), jnp.float32),
                 "heatmaps": jnp.zeros((B, 4, 4, 21)),
                 "cloud": jnp.asarray(rng.normal(size=(B, N, 3)), jnp.float32)}
             for s in SPEC.sources}
    batch = {"rgb": jnp.zeros((B, 4, 4, 3)), "pose": jnp.zeros((B, 21, 3)),
             "heatmaps": jnp.zeros((B, 4, 4, 21)),
             "cloud": jnp.asarray(rng.normal(size=(B, N, 3)), jnp.float32),
             "labelled": jnp.asarray(labelled, jnp.float32)}
    return {"latents": latents, "recon": recon}, batch


def _chamfer(p, q):
    """Per-row symmetric Chamfer of Euclidean distances (Eq. 8), in numpy."""
    d = np.linalg.norm(np.asarray(p, np.float64)[:, :, None] - np.asarray(q, np.float64)[:, None],
                       axis=-1)
    return d.min(2).mean(1) + d.min(1).mean(1)


def _kl(mu, logvar):
    """KL(N(mu, e^logvar) ‖ N(0, I)) per row, in nats per dimension (``kl_reduction="mean"``)."""
    mu, logvar = np.asarray(mu, np.float64), np.asarray(logvar, np.float64)
    return 0.5 * np.mean(np.exp(logvar) + mu ** 2 - 1 - logvar, -1)


@pytest.mark.parametrize("weighting", ["pooled", "separate"])
def test_cloud_terms_and_kls_weigh_rows_as_the_weighting_says(weighting):
    labelled = np.array([1, 1, 1, 0], np.float32)        # 3 labelled rows, 1 unlabelled
    outputs, batch = _outputs_and_batch(labelled)
    _, terms = negative_elbo(SPEC, outputs, batch, WEIGHTS, emd=EMD, kl_reduction="mean",
                             unlabelled_weighting=weighting)
    lab, unlab = labelled > 0, labelled == 0

    def expected(per_row):
        if weighting == "pooled":
            return per_row.mean()
        return per_row[lab].mean() + per_row[unlab].mean()

    chamfer = _chamfer(outputs["recon"]["RC"]["cloud"], batch["cloud"])
    np.testing.assert_allclose(float(terms["RC2C_chamfer"]), expected(chamfer), rtol=1e-5)
    kl_r = _kl(outputs["latents"]["R"]["mu"], outputs["latents"]["R"]["logvar"])
    np.testing.assert_allclose(float(terms["kl_R"]), expected(kl_r), rtol=1e-5)
    # The pose term is the labelled rows' mean under either weighting.
    pose = np.sum(np.asarray(outputs["recon"]["R"]["pose"]) ** 2, (-2, -1))
    np.testing.assert_allclose(float(terms["R2P"]), pose[lab].mean(), rtol=1e-5)


def test_weightings_agree_on_a_fully_labelled_batch():
    outputs, batch = _outputs_and_batch(np.ones(B, np.float32))
    pooled = negative_elbo(SPEC, outputs, batch, WEIGHTS, emd=EMD, kl_reduction="mean")
    separate = negative_elbo(SPEC, outputs, batch, WEIGHTS, emd=EMD, kl_reduction="mean",
                             unlabelled_weighting="separate")
    np.testing.assert_allclose(float(pooled[0]), float(separate[0]), rtol=1e-6)


def test_unknown_weighting_names_the_config_field():
    outputs, batch = _outputs_and_batch(np.ones(B, np.float32))
    with pytest.raises(ValueError, match="config.loss.unlabelled_weighting"):
        negative_elbo(SPEC, outputs, batch, WEIGHTS, emd=EMD, unlabelled_weighting="summed")


def test_step_options_read_the_weighting_and_default_old_configs_to_pooled():
    config = tiny_config("RC2CHP_poe")
    config.loss.unlabelled_weighting = "separate"
    assert step_lib.step_options_from_config(config).unlabelled_weighting == "separate"
    del config.loss["unlabelled_weighting"]          # a config saved before the field
    assert step_lib.step_options_from_config(config).unlabelled_weighting == "pooled"
    config.loss.unlabelled_weighting = "sum"
    with pytest.raises(ValueError, match="config.loss.unlabelled_weighting"):
        step_lib.step_options_from_config(config)
