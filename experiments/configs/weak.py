"""Weak supervision: only the first ``labelled`` fraction of the train split has 3-D poses.

Unlabelled examples still train the point-cloud (and heat-map) reconstructions; the pose term
is masked by the batch's ``labelled`` entry. Command::

    python -m experiments.train \\
        --config experiments/configs/weak.py:labelled=0.1,dataset=rhd \\
        --workdir workdirs/weak_0.1_rhd

Arguments: ``labelled`` in (0, 1] (default 0.1; the paper's curve uses 0.05 … 1.0),
``strategy`` (default RC2CHP_poe; R2P gives the supervised-only baseline on the same
labelled subset) and ``dataset=rhd|stb|synthetic``.

Expected result: error grows as ``labelled`` shrinks, more slowly for RC2CHP_poe than for R2P
(the unlabelled clouds still shape the shared latent space).
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Weak supervision (``arg``: ``labelled=0.05..1.0,strategy=...,dataset=...``)."""
    args = common.parse_arg(arg, {"labelled": 0.1, "strategy": "RC2CHP_poe", "dataset": "rhd"})
    if not 0.0 < args["labelled"] <= 1.0:
        raise ValueError(f"labelled must be in (0, 1], got {args['labelled']}")
    config = common.get_base_config(args["dataset"])
    config.model.strategy = args["strategy"]
    config.data.labelled_fraction = args["labelled"]
    return config
