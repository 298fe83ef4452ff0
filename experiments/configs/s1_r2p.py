"""S1 (RGB → pose, "R2P"): the single-modality baseline of Yang et al. (ICCV 2019).

Command::

    python -m experiments.train --config experiments/configs/s1_r2p.py:dataset=rhd \\
        --workdir workdirs/s1_rhd

Arguments: ``dataset=rhd|stb|synthetic`` (default rhd); ``tiny`` shrinks everything to a
CPU smoke run (``common.shrink_to_tiny``).

Expected result: the weakest of the four strategies on RHD and STB (the paper's baseline row;
S2–S4 improve on it by adding heat maps, point clouds and aligned latents). ``config.json``,
checkpoints and ``metrics.jsonl`` appear in the workdir; ``eval/mean_epe_mm`` in TensorBoard
falls over training.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """S1 on ``dataset`` (``arg``: ``dataset=rhd|stb|synthetic``)."""
    args = common.parse_arg(arg, {"dataset": "rhd", "tiny": False})
    config = common.get_base_config(args["dataset"])
    config.model.strategy = "R2P"
    return common.shrink_to_tiny(config) if args["tiny"] else config
