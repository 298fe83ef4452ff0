"""S2: RGB → pose plus decoders of heat maps and/or the hand point cloud (one shared latent).

Command::

    python -m experiments.train --config experiments/configs/s2.py:decoders=chp,dataset=rhd \\
        --workdir workdirs/s2_chp_rhd

Arguments: ``decoders=hp|cp|chp`` (strategy R2HP, R2CP or R2CHP; default chp) and
``dataset=rhd|stb|synthetic`` (default rhd); ``tiny`` shrinks everything
to a CPU smoke run (``common.shrink_to_tiny``).

Expected result: better than S1 (lower mean EPE, higher AUC) for every decoder set, the point
cloud helping more than the heat maps (the paper's S2 rows).
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common

DECODERS = {"hp": "R2HP", "cp": "R2CP", "chp": "R2CHP"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """S2 with ``decoders`` on ``dataset`` (``arg``: ``decoders=hp|cp|chp,dataset=...``)."""
    args = common.parse_arg(arg, {"decoders": "chp", "dataset": "rhd", "tiny": False})
    if args["decoders"] not in DECODERS:
        raise ValueError(f"decoders must be one of {sorted(DECODERS)}, got {args['decoders']!r}")
    config = common.get_base_config(args["dataset"])
    config.model.strategy = DECODERS[args["decoders"]]
    return common.shrink_to_tiny(config) if args["tiny"] else config
