"""Tiny, CPU-cheap model configs shared by the model and objective tests.

Importable from any test module: pytest puts this folder (it holds the root conftest.py) on
``sys.path``.
"""

from experiments.configs.common import get_base_config


def tiny_model_config(strategy: str, *, latent_dim: int = 8, resnet_width: int = 4,
                      respel_width: int = 8, hidden: int = 16):
    """``config.model`` for ``strategy`` at 32-px crops, 64 points and 8-px heat maps."""
    c = get_base_config("synthetic").model
    c.strategy = strategy
    c.latent_dim, c.image_size, c.resnet_width = latent_dim, 32, resnet_width
    c.respel_width, c.num_points, c.heatmap_size = respel_width, 64, 8
    c.pose_hidden, c.folding_hidden = hidden, hidden
    c.respel_blocks = 2
    return c
