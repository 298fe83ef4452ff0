"""Reusable, pure, unreduced losses (one value per example) for point clouds, poses, Gaussians.

Users write ``handvae.losses.earth_movers_distance``; the implementations live in small
private-by-convention modules (chamfer, emd, reconstruction) and in ``handvae.ops.gaussian``
(the Gaussian helpers sit in ops because the models layer samples and fuses latents with them).
Importing it loads jax and nothing else, so the core install (jax, numpy) suffices; the
reference (signatures, shapes, units, reductions, the EMD's guarantee and speed) is
``handvae/losses/README.md``.

Loss-library decisions (moved from WORKSPACE.md)

Loss-library decisions: Chamfer (Eq. 8) is the *sum* of the two directed *means* of Euclidean
nearest-neighbour distances; `pose_l2` *sums* squared errors over joints and coordinates;
`heatmap_l2` is Eq. 7 as written, Σ_j ‖Ĥ_j − H_j‖: the *unsquared* Frobenius norm of each
keypoint's map difference, summed over keypoints (`safe_sqrt`: zero gradient where a map
difference is exactly zero); EMD (Eq. 9) is the *mean* matched Euclidean distance, its
matching from the ε-scaling auction in `emd.py`/`_auction.py`/`_pooled.py` (forward auction,
Jacobi bids of up to k unassigned rows pooled over the batch, per-element ε schedules, prices
kept across phases). Neighbour search uses the matmul form ‖p‖²+‖q‖²−2p·q without gradient,
the EMD's auction costs explicit differences (one fused pass, 2.5× faster at 32×256 on CPU);
kept distances are recomputed from differences, so gradients are exact and the backward pass is
O(B·N). `argmax`/`argmin` are avoided in hot loops: on XLA:CPU they are ~20× slower than `max`.
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
