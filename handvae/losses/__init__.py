"""Reusable, pure, unreduced losses (one value per example) for point clouds, poses, Gaussians.

Users write ``handvae.losses.earth_movers_distance``; the implementations live in small
private-by-convention modules (chamfer, emd, reconstruction) and in ``handvae.ops.gaussian``
(the Gaussian helpers sit in ops because the models layer samples and fuses latents with them).
Importing it loads jax and nothing else, so the core install (jax, numpy) suffices; the
reference (signatures, shapes, units, reductions, the EMD's guarantee and speed) is
``handvae/losses/README.md``.
"""

from handvae.losses.chamfer import chamfer_distance, pairwise_squared_distances, safe_sqrt
from handvae.losses.emd import AuctionOutput, auction_assignment, earth_movers_distance
from handvae.losses.reconstruction import heatmap_l2, pose_l2
from handvae.ops.gaussian import (gaussian_kl, kl_to_standard_normal, product_of_experts,
                                  reparameterize)

# The one objective of every strategy (handvae/losses/objectives.py).
from handvae.losses.objectives import EMDOptions, LossWeights, negative_elbo

__all__ = [
    "AuctionOutput", "EMDOptions", "LossWeights", "auction_assignment", "chamfer_distance",
    "earth_movers_distance", "gaussian_kl", "heatmap_l2", "kl_to_standard_normal",
    "negative_elbo", "pairwise_squared_distances", "pose_l2", "product_of_experts",
    "reparameterize", "safe_sqrt",
]
