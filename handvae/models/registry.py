"""The training strategies of Yang et al. (ICCV 2019) as data: which latents, which decoders.

A strategy's name reads "inputs 2 outputs": R = RGB, C = point cloud, H = heat maps, P = pose.

=============== ===== ================================== =========================== =========
name            paper latents decoded (sources)         decoders (targets)          fusion
=============== ===== ================================== =========================== =========
``R2P``         S1    z_R ~ q(z|x_R)                     pose                        none
``R2HP``        S2    z_R                                pose, heat maps             none
``R2CP``        S2    z_R                                pose, cloud                 none
``R2CHP``       S2    z_R                                pose, heat maps, cloud      none
``RC2CHP_kl``   S3    z_RC ~ q(z|x_R, x_C), z_R          pose, heat maps, cloud      kl
``RC2CHP_poe``  S4    z_R, z_C, z_RC = PoE(q_R, q_C)     pose, heat maps, cloud      poe
=============== ===== ================================== =========================== =========

The registry is a plain dict; :func:`get_strategy` fails loudly on unknown names.
"""

from __future__ import annotations

from typing import NamedTuple

TARGETS = ("pose", "heatmaps", "cloud")


class StrategySpec(NamedTuple):
    """What a strategy encodes and decodes.

    Attributes:
      name: registry key, e.g. ``"RC2CHP_poe"``.
      paper: the paper's label (S1-S4).
      sources: latents that are decoded, each through every decoder in ``targets``:
        ``"R"`` (RGB encoder), ``"C"`` (cloud encoder), ``"RC"`` (joint encoder for S3, the
        product of experts for S4).
      targets: decoded modalities, a subset of ("pose", "heatmaps", "cloud").
      fusion: ``"none"``, ``"kl"`` (S3: joint encoder, β'·KL(q_RC‖q_R)) or ``"poe"`` (S4).
    """

    name: str
    paper: str
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    fusion: str

    @property
    def uses_cloud_input(self) -> bool:
        """Whether the encoders read ``batch['cloud']``."""
        return self.fusion in ("kl", "poe")

    @property
    def decodes_cloud(self) -> bool:
        """Whether the strategy has a point-cloud decoder (and so learns from unlabelled data)."""
        return "cloud" in self.targets


STRATEGY_SPECS: dict[str, StrategySpec] = {
    "R2P": StrategySpec("R2P", "S1", ("R",), ("pose",), "none"),
    "R2HP": StrategySpec("R2HP", "S2", ("R",), ("pose", "heatmaps"), "none"),
    "R2CP": StrategySpec("R2CP", "S2", ("R",), ("pose", "cloud"), "none"),
    "R2CHP": StrategySpec("R2CHP", "S2", ("R",), TARGETS, "none"),
    "RC2CHP_kl": StrategySpec("RC2CHP_kl", "S3", ("RC", "R"), TARGETS, "kl"),
    "RC2CHP_poe": StrategySpec("RC2CHP_poe", "S4", ("R", "C", "RC"), TARGETS, "poe"),
}

STRATEGIES: tuple[str, ...] = tuple(STRATEGY_SPECS)


def get_strategy(name: str) -> StrategySpec:
    """The spec registered under ``name``; ValueError listing the known names otherwise."""
    try:
        return STRATEGY_SPECS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown strategy {name!r}; known strategies: {', '.join(STRATEGIES)} "
                         "(set config.model.strategy to one of them)") from None
