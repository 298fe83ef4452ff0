"""The training strategies of Yang et al. (ICCV 2019) as data: one record per strategy.

A strategy's name reads "inputs 2 outputs": R = RGB, C = point cloud, H = heat maps, P = pose.
The record says everything the trainer needs: which latents are decoded, by which decoders,
how they are fused, and which KL terms the ELBO has. ``handvae.losses.objectives.negative_elbo``
derives the one objective of every strategy from it, so adding a strategy is one row here.

============== ===== ============================== ========= ====== ======== ========
name           paper latents decoded (sources)     decoders  fusion prior KL align KL
============== ===== ============================== ========= ====== ======== ========
``R2P``        S1    z_R ~ q(z|x_R)                 P         none   R
``R2HP``       S2    z_R                            H, P      none   R
``R2CP``       S2    z_R                            C, P      none   R
``R2CHP``      S2    z_R                            C, H, P   none   R
``RC2CHP_kl``  S3    z_RC ~ q(z|x_R, x_C), z_R      C, H, P   kl     RC, R    RC ‖ R
``RC2CHP_poe`` S4    z_R, z_C, z_RC = PoE(q_R, q_C) C, H, P   poe    R, C
============== ===== ============================== ========= ====== ======== ========

Decoders: P pose, H heat maps, C point cloud (``targets``). Prior KL: β · KL(q_s ‖ N(0, I))
for each listed latent (Eqs. 1–4; S4's product has no KL of its own, Eq. 4). Align KL:
β' · KL(q_a ‖ q_b) for each pair (a, b) (S3, Eq. 3).

The registry is a plain dict; :func:`get_strategy` fails loudly on unknown names.

Decision (moved from WORKSPACE.md)

**A strategy is one record** (issue 11): `StrategySpec` holds sources, targets, fusion, the
prior-KL latents and the alignment KL pairs; one `negative_elbo` derives every strategy's
objective. The prior-expert option is a model field, not a record field: it changes how
S4's product is computed, not which terms the ELBO has (the same record, Eq. 4, either way),
and one value must live in one place (`config.model.poe_prior_expert`).
"""

from __future__ import annotations

from typing import NamedTuple

from handvae.data import spec as batch_spec

TARGETS = ("pose", "heatmaps", "cloud")
FUSIONS = ("none", "kl", "poe")
SOURCES = ("R", "C", "RC")
SUPERVISED_TARGETS = ("pose", "heatmaps")


class StrategySpec(NamedTuple):
    """What a strategy encodes, decodes and which KL terms its ELBO has.

    Attributes:
      name: registry key, e.g. ``"RC2CHP_poe"``.
      paper: the paper's label (S1-S4).
      sources: latents that are decoded, each through every decoder in ``targets``:
        ``"R"`` (RGB encoder), ``"C"`` (cloud encoder), ``"RC"`` (joint encoder for S3, the
        product of experts for S4).
      targets: decoded modalities, a subset of ("pose", "heatmaps", "cloud").
      fusion: how the cloud enters: ``"none"`` (it does not), ``"kl"`` (S3: a joint RGB+cloud
        encoder gives z_RC) or ``"poe"`` (S4: a cloud encoder gives z_C and
        z_RC = PoE(q_R, q_C)).
      prior_kl: latents whose KL to the prior N(0, I) enters the ELBO with weight β.
      alignment_kl: pairs ``(a, b)``: β' · KL(q_a ‖ q_b) enters the ELBO (S3: ("RC", "R")).
    """

    name: str
    paper: str
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    fusion: str
    prior_kl: tuple[str, ...]
    alignment_kl: tuple[tuple[str, str], ...] = ()

    @property
    def uses_cloud_input(self) -> bool:
        """Whether the encoders read ``batch['cloud']``."""
        return self.fusion in ("kl", "poe")

    @property
    def decodes_cloud(self) -> bool:
        """Whether the strategy has a point-cloud decoder (and so learns from unlabelled data)."""
        return "cloud" in self.targets

    @property
    def latents(self) -> tuple[str, ...]:
        """Every latent the model must encode: decoded ones and those only in a KL term."""
        names = list(self.sources) + list(self.prior_kl)
        names += [name for pair in self.alignment_kl for name in pair]
        return tuple(dict.fromkeys(names))

    def batch_keys(self, evaluation: bool = False) -> tuple[str, ...]:
        """The batch entries this strategy reads: ``handvae.data.spec.required_keys``.

        Training reads ``rgb``, ``labelled``, each decoded target and ``cloud`` when an
        encoder reads it (with ``cloud_resampled``); ``evaluation=True`` adds what the hand3d
        metrics and the figures read. Pass the result as ``keys=`` to the input pipeline.
        """
        return batch_spec.required_keys(self.targets, self.uses_cloud_input,
                                        evaluation=evaluation)

    def validate(self) -> StrategySpec:
        """Checks the record's internal consistency; returns it (ValueError naming the field)."""
        problems = []
        if self.fusion not in FUSIONS:
            problems.append(f"fusion {self.fusion!r} is not one of {FUSIONS}")
        if not self.targets or not set(self.targets) <= set(TARGETS):
            problems.append(f"targets {self.targets} must be a non-empty subset of {TARGETS}")
        if not self.sources:
            problems.append("sources is empty")
        available = {"none": {"R"}, "kl": {"R", "RC"}, "poe": {"R", "C", "RC"}}.get(
            self.fusion, set())
        used = set(self.latents)
        if not used <= available:
            problems.append(f"latents {sorted(used - available)} need another fusion (fusion "
                            f"{self.fusion!r} gives {sorted(available)})")
        if self.fusion == "poe" and "RC" in self.prior_kl:
            problems.append("the product of experts has no KL of its own (Eq. 4): drop 'RC' "
                            "from prior_kl")
        if problems:
            raise ValueError(f"strategy {self.name!r}: " + "; ".join(problems))
        return self


STRATEGY_SPECS: dict[str, StrategySpec] = {
    "R2P": StrategySpec("R2P", "S1", ("R",), ("pose",), "none", ("R",)),
    "R2HP": StrategySpec("R2HP", "S2", ("R",), ("pose", "heatmaps"), "none", ("R",)),
    "R2CP": StrategySpec("R2CP", "S2", ("R",), ("pose", "cloud"), "none", ("R",)),
    "R2CHP": StrategySpec("R2CHP", "S2", ("R",), TARGETS, "none", ("R",)),
    "RC2CHP_kl": StrategySpec("RC2CHP_kl", "S3", ("RC", "R"), TARGETS, "kl", ("RC", "R"),
                              (("RC", "R"),)),
    "RC2CHP_poe": StrategySpec("RC2CHP_poe", "S4", ("R", "C", "RC"), TARGETS, "poe",
                               ("R", "C")),
}
for _spec in STRATEGY_SPECS.values():
    _spec.validate()

STRATEGIES: tuple[str, ...] = tuple(STRATEGY_SPECS)


def get_strategy(name: str) -> StrategySpec:
    """The spec registered under ``name``; ValueError listing the known names otherwise."""
    try:
        return STRATEGY_SPECS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown strategy {name!r}; known strategies: "
                         f"{', '.join(STRATEGY_SPECS)} "
                         "(set config.model.strategy to one of them)") from None
