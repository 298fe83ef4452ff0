"""Tiny, CPU-cheap model configs shared by the model and objective tests.

Importable from any test module: pytest puts this folder (it holds the root conftest.py) on
``sys.path``. The sizes are the configs' own ``tiny`` variant (``experiments/configs/common.py``
``shrink_to_tiny``: 32-px crops, 64 points, 8-px heat maps), not a hand-shrunk copy.
"""

from experiments.configs.common import get_base_config, shrink_to_tiny


def tiny_config(strategy: str = "R2P"):
    """The whole experiment config of ``strategy`` at its ``tiny`` size."""
    config = shrink_to_tiny(get_base_config("synthetic"))
    config.model.strategy = strategy
    return config


def tiny_model_config(strategy: str, **overrides):
    """``config.model`` for ``strategy`` at the ``tiny`` size, with optional field overrides."""
    model = tiny_config(strategy).model
    for name, value in overrides.items():
        model[name] = value
    return model
