"""S4 ("RC2CHP_poe"): RGB and point-cloud latents combined by a product of Gaussian experts.

The paper's full method. Command::

    python -m experiments.train --config experiments/configs/s4_poe.py:dataset=rhd \\
        --workdir workdirs/s4_rhd

Arguments: ``dataset=rhd|stb|synthetic`` (default rhd); ``tiny`` shrinks everything to a
CPU smoke run (``s4_poe.py:synthetic,tiny``, see ``common.shrink_to_tiny``). Sweep β and λ with::

    python -m experiments.sweep --config experiments/configs/s4_poe.py:dataset=rhd \\
        --root workdirs/s4_sweep --sweep 'loss.beta_max=1e-3,1e-2' \\
        --sweep 'loss.lambda_cloud=0.5,1,2'

Expected result: the best of the four strategies on RHD and STB (the paper's headline rows).
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """S4 on ``dataset`` (``arg``: ``dataset=rhd|stb|synthetic``)."""
    args = common.parse_arg(arg, {"dataset": "rhd", "tiny": False})
    config = common.get_base_config(args["dataset"])
    config.model.strategy = "RC2CHP_poe"
    return common.shrink_to_tiny(config) if args["tiny"] else config
