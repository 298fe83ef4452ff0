"""The strategy record: the paper's table, the batch keys each strategy reads, validation."""

import pytest

from handvae.data.spec import BATCH_KEYS
from handvae.models.registry import STRATEGIES, STRATEGY_SPECS, get_strategy


@pytest.mark.parametrize("strategy,training", [
    ("R2P", {"rgb", "labelled", "pose"}),
    ("R2HP", {"rgb", "labelled", "pose", "heatmaps"}),
    ("R2CP", {"rgb", "labelled", "pose", "cloud", "cloud_resampled"}),
    ("R2CHP", {"rgb", "labelled", "pose", "heatmaps", "cloud", "cloud_resampled"}),
    ("RC2CHP_kl", {"rgb", "labelled", "pose", "heatmaps", "cloud", "cloud_resampled"}),
    ("RC2CHP_poe", {"rgb", "labelled", "pose", "heatmaps", "cloud", "cloud_resampled"})])
def test_batch_keys_are_what_the_strategy_reads(strategy, training):
    spec = get_strategy(strategy)
    assert set(spec.batch_keys()) == training
    assert set(spec.batch_keys(evaluation=True)) == training | {
        "pose", "keypoints_2d", "visible", "root", "scale"}
    assert set(spec.batch_keys(evaluation=True)) <= set(BATCH_KEYS)


def test_every_row_is_consistent_and_latents_cover_the_kl_terms():
    assert tuple(STRATEGY_SPECS) == STRATEGIES
    for spec in STRATEGY_SPECS.values():
        assert spec.validate() is spec
        assert set(spec.prior_kl) | {n for pair in spec.alignment_kl for n in pair} <= set(
            spec.latents)
    assert get_strategy("RC2CHP_kl").latents == ("RC", "R")
