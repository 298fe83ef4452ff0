"""Unit-free ε, the N-dependent round bound, ``return_converged`` and the Pallas variant."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from handvae import losses
from handvae.losses import _auction


def _hand_like_clouds(batch, n, seed):
    """[B, N, 3] pairs of clustered clouds ~7 units across (a palm slab and five 'fingers'),
    the second a noisy resample of the first: the structure of hand reconstructions."""
    rng = np.random.default_rng(seed)

    def cloud(bend):
        palm = rng.uniform([-1.5, -1.8, -0.35], [1.8, 1.0, 0.35], size=(n // 2, 3))
        finger = rng.integers(0, 5, n - n // 2)
        t = rng.uniform(0, 3, n - n // 2)
        base = np.stack([-1.6 + 0.8 * finger, 1.0 + 0 * t, 0 * t], 1)
        curl = bend[finger] * t / 3
        direction = np.stack([0 * t, np.cos(curl), -np.sin(curl)], 1)
        return np.concatenate([palm, base + t[:, None] * direction
                               + rng.normal(0, 0.2, (len(t), 3))])

    bends = rng.uniform(0, 1.5, (batch, 5))
    p = np.stack([cloud(b + rng.normal(0, 0.15, 5)) + rng.normal(0, 0.05, (n, 3))
                  for b in bends])
    q = np.stack([cloud(b) for b in bends])
    return p.astype(np.float32), q.astype(np.float32)


def _relative_gaps(p, q, distance):
    """(EMD − exact EMD) / exact EMD per example, the exact one by scipy in float64."""
    cost = np.linalg.norm(p[:, :, None].astype(np.float64) - q[:, None], axis=-1)
    exact = np.array([c[linear_sum_assignment(c)].mean() for c in cost])
    return np.asarray(distance, np.float64) / exact - 1.0


@pytest.mark.parametrize("unit", [0.014, 0.14, 14.0])   # ~10 cm hands in m, dm, mm
def test_default_emd_accuracy_does_not_depend_on_units(unit):
    # The same hand-like clouds in three units: the old absolute ε=1e-3 gave a mean relative
    # gap of 1e-3 on clouds 5 cm across in metres and 2e-6 in decimetres.
    p, q = _hand_like_clouds(4, 64, seed=0)
    p, q = p * np.float32(unit), q * np.float32(unit)
    distance, converged = losses.earth_movers_distance(p, q, return_converged=True)
    assert converged.dtype == bool and np.all(converged)
    gaps = _relative_gaps(p, q, distance)
    assert np.mean(gaps) <= 1e-4
    assert np.all(gaps >= -1e-5)                      # never below the optimum (round-off)
    assert np.all(gaps <= losses.emd.EPSILON + 1e-5)  # the documented (1 + ε) guarantee


def test_relative_epsilon_gives_the_same_matching_in_any_unit():
    p, q = _hand_like_clouds(2, 32, seed=1)
    cost = np.linalg.norm(p[:, :, None] - q[:, None], axis=-1)
    base = losses.auction_assignment(cost)
    for unit in (1e-3, 1e3):     # powers of two would be bit-exact; these only round
        scaled = losses.auction_assignment((cost * unit).astype(np.float32))
        np.testing.assert_allclose(np.asarray(scaled.cost) / unit, base.cost, rtol=1e-4)
    scale = np.asarray(_auction.cost_scale(cost))
    lower = np.maximum(cost.min(2).mean(1), cost.min(1).mean(1))
    np.testing.assert_allclose(scale, np.maximum(lower, 1e-3 * (cost.max((1, 2))
                                                                - cost.min((1, 2)))), rtol=1e-6)


def test_return_converged_reports_a_cut_off_solve():
    p, q = _hand_like_clouds(2, 32, seed=2)
    plain = losses.earth_movers_distance(p, q)
    distance, converged = losses.earth_movers_distance(p, q, return_converged=True)
    assert plain.shape == (2,) and converged.shape == (2,)
    np.testing.assert_array_equal(plain, distance)
    assert np.all(converged)
    cut, converged = losses.earth_movers_distance(p, q, max_iterations=3, return_converged=True)
    assert not np.any(converged)
    assert np.all(np.isfinite(cut))                   # a valid matching, flagged not optimal


def test_default_round_bound_grows_with_points_and_batch():
    bound = losses.emd.default_max_iterations
    assert bound(8, 2048) > bound(8, 1024) > bound(32, 256) > 10_000
    assert bound(32, 256) > bound(1, 256)


def test_warm_start_satisfies_complementary_slackness():
    rng = np.random.default_rng(3)
    benefit = -rng.uniform(size=(3, 9, 9)).astype(np.float32)
    benefit[1, :, 4] = benefit[1, :, 3]               # tied columns: one row claims both
    prices, owner, assignment = (np.asarray(x) for x in _auction.warm_start(benefit))
    for b in range(3):
        rows = np.flatnonzero(assignment[b] >= 0)
        assert len(rows) >= 1
        values = benefit[b] - prices[b][None, :]
        held = values[rows, assignment[b, rows]]
        np.testing.assert_array_equal(held, values[rows].max(1))     # 0-CS
        np.testing.assert_array_equal(owner[b, assignment[b, rows]], rows)
        assert len(set(assignment[b, rows])) == len(rows)
        assert np.sum(owner[b] < 9) == len(rows)


def test_pallas_kernel_in_interpreter_matches_scipy_and_dense():
    # One compile of the interpreted kernel: random costs, ties, a NaN element, N = 8.
    rng = np.random.default_rng(4)
    cost = rng.uniform(size=(3, 8, 8)).astype(np.float32)
    cost[1] = np.round(cost[1] * 2) / 2
    cost[2, 0, 1] = np.nan
    out = losses.auction_assignment(cost, variant="pallas")
    dense = losses.auction_assignment(cost, variant="dense", rounds_per_iteration=1)
    np.testing.assert_array_equal(out.converged, [True, True, False])
    for row in np.asarray(out.assignment):
        np.testing.assert_array_equal(np.sort(row), np.arange(8))
    optimum = np.array([c[linear_sum_assignment(c)].sum() for c in cost[:2].astype(np.float64)])
    scale = np.asarray(_auction.cost_scale(cost[:2]))
    assert np.all(np.asarray(out.cost[:2]) <= optimum + 8 * losses.emd.EPSILON * scale + 1e-5)
    assert np.isnan(out.cost[2])
    # Same round, same tie-breaking: the kernel reproduces the dense variant exactly.
    np.testing.assert_array_equal(out.assignment, dense.assignment)
    assert int(out.iterations) > 0


@pytest.mark.slow
def test_default_emd_converges_on_2048_points():
    # Before: the default 10,000-round bound cut N = 2048 off 1-2.6 % above the optimum.
    p, q = _hand_like_clouds(2, 2048, seed=5)
    distance, converged = losses.earth_movers_distance(p, q, return_converged=True)
    assert np.all(converged)
    assert np.mean(_relative_gaps(p, q, distance)) <= 1e-4
