"""Weak supervision (Sec. 5.3, Fig. 8): S4 on the first m% labelled, with or without the rest.

The paper: "we sample the first m% samples as labelled data (including RGB, point clouds and 3D
poses) and the rest as unlabelled data (including RGB, point clouds) by discarding 3D pose
labels ... In the supervised training setting, we train the networks with only m% samples. In
the weakly-supervised setting, besides fully supervised training on m% data, we also train the
'RC2C' sub-parts with the rest (100−m)% samples simultaneously."

* ``setting=supervised``: ``data.train_fraction = m`` (only the first m% are read, all
  labelled);
* ``setting=weak``: ``data.labelled_fraction = m``; every step holds the supervised
  setting's whole batch of B labelled rows plus B rows from the unlabelled (100−m)%
  (``data.weak_batch = "added"``; ``"split"`` keeps B rows, half labelled;
  ``handvae/data/streams.py``).
  Unlabelled rows train the RC2C parts only (RGB and cloud encoders, the
  cloud decoder and the KL terms): the pose and heat-map terms are masked by ``labelled``.

Command (one point of Fig. 8; the README loops over m ∈ {0.05, 0.1, 0.25, 0.5, 1.0})::

    python -m experiments.train \\
        --config experiments/configs/weak.py:labelled=0.1,setting=weak,dataset=rhd \\
        --workdir workdirs/weak_rhd/weak_0.1

Arguments: ``labelled`` m in (0, 1] (default 0.1), ``setting`` weak|supervised (default weak),
``strategy`` (default RC2CHP_poe, the paper's S4) and ``dataset=rhd|stb|synthetic``. At
m = 1 both settings are the fully supervised run.

Expected result (Fig. 8): mean EPE grows as m shrinks; the weak setting stays below the
supervised one, by up to 6 % in the paper.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common

SETTINGS = ("weak", "supervised")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Weak supervision (``arg``: ``labelled=0.05..1.0,setting=weak|supervised,...``)."""
    args = common.parse_arg(arg, {"labelled": 0.1, "setting": "weak",
                                  "strategy": "RC2CHP_poe", "dataset": "rhd"})
    if not 0.0 < args["labelled"] <= 1.0:
        raise ValueError(f"labelled must be in (0, 1], got {args['labelled']}")
    if args["setting"] not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {args['setting']!r}")
    config = common.get_base_config(args["dataset"])
    config.model.strategy = args["strategy"]
    if args["setting"] == "supervised":
        config.data.train_fraction = args["labelled"]
    else:
        config.data.labelled_fraction = args["labelled"]
    return config
