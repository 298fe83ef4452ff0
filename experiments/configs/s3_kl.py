"""S3 ("RC2CHP_kl"): RGB and point-cloud encoders aligned by a KL term between their latents.

Command::

    python -m experiments.train --config experiments/configs/s3_kl.py:dataset=rhd \\
        --workdir workdirs/s3_rhd

Arguments: ``dataset=rhd|stb|synthetic`` (default rhd); ``tiny`` shrinks everything to a
CPU smoke run (``common.shrink_to_tiny``). The alignment weight is
``loss.beta_prime`` (β', 1 in the paper).

Expected result: better than S2 with the same decoders (the aligned latent space), below S4.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """S3 on ``dataset`` (``arg``: ``dataset=rhd|stb|synthetic``)."""
    args = common.parse_arg(arg, {"dataset": "rhd", "tiny": False})
    config = common.get_base_config(args["dataset"])
    config.model.strategy = "RC2CHP_kl"
    return common.shrink_to_tiny(config) if args["tiny"] else config
