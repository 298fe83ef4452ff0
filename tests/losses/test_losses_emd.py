"""Auction assignment and EMD (Eq. 9) against scipy's exact assignment, by hand, degenerate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.optimize import linear_sum_assignment

from handvae import losses
from handvae.losses import _auction, _pooled

EPSILON = 1e-3


def _clouds_with_duplicates_and_ties(n, seed):
    """[3, n, n] Euclidean costs: random clouds; clouds with duplicated points; a lattice."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=(3, n, 3))
    q = rng.uniform(size=(3, n, 3))
    p[1, n // 2:] = p[1, : n - n // 2]              # duplicated points in both clouds
    q[1, 1::2] = q[1, 0:n - 1:2]
    p[2] = np.round(p[2] * 2) / 2                   # few distinct points: many exact ties
    q[2] = np.round(q[2] * 2) / 2
    return np.linalg.norm(p[:, :, None] - q[:, None], axis=-1).astype(np.float32)


def _optimal_cost(cost):
    return np.array([c[linear_sum_assignment(c)].sum() for c in np.asarray(cost, np.float64)])


def _assert_permutations(assignment):
    for row in np.asarray(assignment):
        np.testing.assert_array_equal(np.sort(row), np.arange(len(row)))


def _assert_within_n_epsilon_of_scipy(cost, out, n):
    """A converged int32 permutation whose reported cost is its own and within N·ε of optimal."""
    _assert_permutations(out.assignment)
    assert out.assignment.dtype == jnp.int32
    assert np.all(out.converged)
    realised = np.take_along_axis(cost, np.asarray(out.assignment)[..., None], -1)[..., 0]
    np.testing.assert_allclose(out.cost, realised.sum(-1), rtol=1e-6)
    optimum = _optimal_cost(cost)
    # N·ε guarantee, plus float32 round-off of the sums.
    assert np.all(np.asarray(out.cost) <= optimum + n * EPSILON + 1e-4 * optimum + 1e-6)
    assert np.all(np.asarray(out.cost) >= optimum - 1e-4 * optimum - 1e-6)


@pytest.mark.parametrize("n", [1, 2, 17, 64, 256])
def test_auction_within_n_epsilon_of_scipy(n):
    cost = _clouds_with_duplicates_and_ties(n, seed=n)
    out = losses.auction_assignment(cost, epsilon=EPSILON, relative=False)
    _assert_within_n_epsilon_of_scipy(cost, out, n)


@pytest.mark.parametrize("n", [17, 64])
def test_auction_exact_on_integer_costs(n):
    rng = np.random.default_rng(n)
    cost = rng.integers(0, 20, size=(3, n, n)).astype(np.float32)
    cost[1] = cost[1] // 5                           # many ties
    out = losses.auction_assignment(cost, epsilon=1.0 / (n + 1), relative=False)
    assert np.all(out.converged)
    _assert_permutations(out.assignment)
    np.testing.assert_array_equal(out.cost, _optimal_cost(cost))


def test_auction_single_phase_and_explicit_initial_epsilon():
    cost = _clouds_with_duplicates_and_ties(17, seed=3)
    optimum = _optimal_cost(cost)
    for kwargs in ({"epsilon_scaling": 1.0}, {"initial_epsilon": 0.05, "epsilon_scaling": 3.0}):
        out = losses.auction_assignment(cost, epsilon=EPSILON, relative=False, **kwargs)
        assert np.all(out.converged)
        _assert_permutations(out.assignment)
        assert np.all(np.asarray(out.cost) <= optimum + 17 * EPSILON + 1e-5)


def test_auction_by_hand_and_deterministic_ties():
    cost = np.array([[[1.0, 2.0], [2.0, 4.0]],       # swap: 2 + 2 < 1 + 4
                     [[0.0, 0.0], [0.0, 0.0]]], np.float32)   # all tied
    out = losses.auction_assignment(cost, epsilon=0.1, relative=False)
    np.testing.assert_array_equal(out.assignment[0], [1, 0])
    np.testing.assert_allclose(out.cost, [4.0, 0.0])
    again = losses.auction_assignment(cost, epsilon=0.1, relative=False)
    np.testing.assert_array_equal(out.assignment, again.assignment)


def test_auction_nan_input_terminates_and_reports():
    cost = _clouds_with_duplicates_and_ties(17, seed=0)
    cost[0, 3, 4] = np.nan
    cost[2, 0, 0] = np.inf
    out = losses.auction_assignment(cost, epsilon=EPSILON, relative=False)
    np.testing.assert_array_equal(out.converged, [False, True, False])
    _assert_permutations(out.assignment)
    np.testing.assert_array_equal(out.assignment[0], np.arange(17))    # identity
    assert np.isnan(out.cost[0]) and np.isfinite(out.cost[1])


def test_auction_iteration_bound_still_gives_a_permutation():
    cost = _clouds_with_duplicates_and_ties(17, seed=1)
    out = losses.auction_assignment(cost, epsilon=EPSILON, relative=False, max_iterations=2)
    assert int(out.iterations) == 2
    assert not np.any(out.converged)
    _assert_permutations(out.assignment)


def test_auction_bad_inputs_raise():
    with pytest.raises(ValueError, match="cost must be square"):
        losses.auction_assignment(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="cost must have rank 3"):
        losses.auction_assignment(np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="cost must be a floating-point array"):
        losses.auction_assignment(np.zeros((1, 3, 3), np.int32))
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        losses.auction_assignment(np.zeros((1, 3, 3), np.float32), epsilon=0.0)


def test_emd_by_hand():
    p = jnp.array([[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]],
                   [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    q = jnp.array([[[2.0, 1.0, 0.0], [0.0, 1.0, 0.0]],      # each point moves by 1
                   [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])     # same set, permuted
    np.testing.assert_allclose(losses.earth_movers_distance(p, q), [1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(losses.earth_movers_distance(p, q, squared=True), [1.0, 0.0],
                               atol=1e-6)


def test_emd_batched_matches_scipy_and_jit():
    rng = np.random.default_rng(5)
    p = rng.normal(size=(3, 17, 3)).astype(np.float32)
    q = rng.normal(size=(3, 17, 3)).astype(np.float32)
    cost = np.linalg.norm(p[:, :, None] - q[:, None], axis=-1)
    exact = _optimal_cost(cost) / 17
    got = jax.jit(losses.earth_movers_distance)(p, q)
    assert got.shape == (3,)
    # Default ε is relative: within a factor (1 + ε) of the exact EMD.
    assert np.all(np.asarray(got) <= exact * (1 + losses.emd.EPSILON) + 1e-6)
    assert np.all(np.asarray(got) >= exact - 1e-5)
    for b in range(3):
        np.testing.assert_allclose(losses.earth_movers_distance(p[b:b + 1], q[b:b + 1]),
                                   got[b:b + 1], rtol=1e-6)


def test_emd_gradient_through_distances_only():
    rng = np.random.default_rng(6)
    p = jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32)
    q = jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32)
    check_grads(losses.earth_movers_distance, (p, q), order=1, modes=["rev"], atol=1e-2,
                rtol=1e-2)
    assignment = losses.auction_assignment(
        jnp.linalg.norm(p[:, :, None] - q[:, None], axis=-1)).assignment
    matched = jnp.take_along_axis(q, assignment[..., None], axis=1)
    diff = p - matched
    want = diff / jnp.linalg.norm(diff, axis=-1, keepdims=True) / 5
    grad = jax.grad(lambda x: losses.earth_movers_distance(x, q).sum())(p)
    np.testing.assert_allclose(grad, want, rtol=1e-5, atol=1e-6)


def test_emd_finite_gradient_on_degenerate_clouds():
    rng = np.random.default_rng(7)
    p = jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32)
    duplicated = p.at[:, 1].set(p[:, 0])
    for q in (p, duplicated, jnp.zeros_like(p)):
        grad = jax.grad(lambda x: losses.earth_movers_distance(x, q).sum())(p)
        assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(losses.earth_movers_distance(p, p), [0.0, 0.0], atol=1e-7)
    zeros = jnp.zeros((1, 4, 3))
    grad = jax.grad(lambda x: losses.earth_movers_distance(x, zeros).sum())(zeros)
    np.testing.assert_array_equal(grad, 0.0)


@pytest.mark.parametrize("p_shape,q_shape,match", [
    ((2, 5, 3), (2, 6, 3), "same number of points N"),
    ((2, 5, 3), (3, 5, 3), "same batch size"),
    ((5, 3), (5, 3), "p must have rank 3"),
    ((2, 5, 3), (2, 5, 4), r"q must have shape \[B, N, 3\]"),
])
def test_emd_bad_shapes_raise(p_shape, q_shape, match):
    with pytest.raises(ValueError, match=match):
        losses.earth_movers_distance(np.zeros(p_shape, np.float32), np.zeros(q_shape, np.float32))


# The dense variant (the default on GPU/TPU), forced on CPU: the same guarantees.
DENSE = {"variant": "dense", "rounds_per_iteration": 4, "relative": False}


@pytest.mark.parametrize("n", [1, 2, 17, 64])
def test_dense_auction_within_n_epsilon_of_scipy(n):
    cost = _clouds_with_duplicates_and_ties(n, seed=n)
    out = losses.auction_assignment(cost, epsilon=EPSILON, **DENSE)
    _assert_within_n_epsilon_of_scipy(cost, out, n)


def test_dense_auction_exact_on_integer_costs():
    rng = np.random.default_rng(17)
    cost = rng.integers(0, 20, size=(3, 17, 17)).astype(np.float32)
    cost[1] = cost[1] // 5                           # many ties
    out = losses.auction_assignment(cost, epsilon=1.0 / 18, **DENSE)
    assert np.all(out.converged)
    _assert_permutations(out.assignment)
    np.testing.assert_array_equal(out.cost, _optimal_cost(cost))


def test_dense_auction_by_hand_nan_and_single_phase():
    cost = np.array([[[1.0, 2.0], [2.0, 4.0]],
                     [[0.0, 0.0], [0.0, 0.0]],
                     [[0.0, np.nan], [0.0, 0.0]]], np.float32)
    out = losses.auction_assignment(cost, epsilon=0.1, **DENSE)
    # All-tied element: any permutation is optimal (which one depends on the warm start).
    np.testing.assert_array_equal(out.assignment[0::2], [[1, 0], [0, 1]])
    _assert_permutations(out.assignment)
    np.testing.assert_array_equal(out.converged, [True, True, False])
    np.testing.assert_allclose(out.cost[:2], [4.0, 0.0])
    assert np.isnan(out.cost[2])
    cost = _clouds_with_duplicates_and_ties(17, seed=3)
    out = losses.auction_assignment(cost, epsilon=EPSILON, epsilon_scaling=1.0, **DENSE)
    assert np.all(out.converged)
    assert np.all(np.asarray(out.cost) <= _optimal_cost(cost) + 17 * EPSILON + 1e-5)


def test_dense_rounds_per_iteration_changes_nothing_and_bound_counts_rounds():
    """Rounds past the end of the loop are no-ops: R only changes how often the loop checks."""
    cost = _clouds_with_duplicates_and_ties(17, seed=1)
    one = losses.auction_assignment(cost, epsilon=EPSILON, variant="dense",
                                    rounds_per_iteration=1, relative=False)
    four = losses.auction_assignment(cost, epsilon=EPSILON, **DENSE)
    assert int(one.iterations) % 4 != 0              # the last iteration has spare rounds
    for a, b in zip(one, four):
        np.testing.assert_array_equal(a, b)
    cut = losses.auction_assignment(cost, epsilon=EPSILON, max_iterations=7, **DENSE)
    assert int(cut.iterations) == 7                  # stops inside the second iteration
    assert not np.any(cut.converged)
    _assert_permutations(cut.assignment)


@pytest.mark.parametrize("backend,variant", [("cpu", "pooled"), ("gpu", "pallas"),
                                             ("tpu", "dense")])
def test_default_variant_by_backend(monkeypatch, backend, variant):
    monkeypatch.setattr(_auction.jax, "default_backend", lambda: backend)
    assert _auction.default_variant() == variant


def test_pallas_warps_override_is_checked(monkeypatch):
    from handvae.losses import _auction_pallas
    assert _auction_pallas.num_warps(256) == 1 and _auction_pallas.num_warps(2048) == 8
    monkeypatch.setenv("HANDVAE_PALLAS_NUM_WARPS", "4")
    assert _auction_pallas.num_warps(256) == 4
    monkeypatch.setenv("HANDVAE_PALLAS_NUM_WARPS", "four")
    with pytest.raises(ValueError, match="HANDVAE_PALLAS_NUM_WARPS"):
        _auction_pallas.num_warps(256)


def test_pallas_warns_when_triton_params_are_missing(monkeypatch):
    import sys
    import types

    from handvae.losses import _auction_pallas
    assert _auction_pallas._compiler_params(True, 4) == {}          # interpreter: none needed
    from jax.experimental import pallas
    empty = types.ModuleType("jax.experimental.pallas.triton")       # no CompilerParams
    monkeypatch.setitem(sys.modules, "jax.experimental.pallas.triton", empty)
    monkeypatch.setattr(pallas, "triton", empty, raising=False)
    with pytest.warns(RuntimeWarning, match="CompilerParams"):
        assert _auction_pallas._compiler_params(False, 4) == {}


def test_variant_default_and_bad_options():
    assert jax.default_backend() == "cpu"            # conftest: tests run on CPU
    assert _auction.default_variant() == "pooled"    # the tests above ran the CPU variant
    cost = _clouds_with_duplicates_and_ties(17, seed=2)
    with pytest.raises(ValueError, match="variant must be one of"):
        losses.auction_assignment(cost, variant="sparse")
    with pytest.raises(ValueError, match="rounds_per_iteration must be >= 1"):
        losses.auction_assignment(cost, variant="dense", rounds_per_iteration=0)


def test_dense_emd_matches_scipy():
    rng = np.random.default_rng(5)
    p = rng.normal(size=(3, 17, 3)).astype(np.float32)
    q = rng.normal(size=(3, 17, 3)).astype(np.float32)
    cost = np.linalg.norm(p[:, :, None] - q[:, None], axis=-1)
    got = losses.earth_movers_distance(p, q, variant="dense", rounds_per_iteration=4)
    exact = _optimal_cost(cost) / 17
    assert np.all(np.asarray(got) <= exact * (1 + losses.emd.EPSILON) + 1e-6)
    assert np.all(np.asarray(got) >= exact - 1e-5)


def test_pooled_stack_holds_exactly_the_unassigned_rows():
    # The pooled loop keeps the unassigned rows of the unfinished elements in a stack
    # (queue[:count]) and their number per element, both updated in O(k) per round and O(N)
    # per phase reset; after every round and reset they must equal a full recount, each row
    # once (tiers 16 and 4 alternate; the 4-slot tier leaves bidders on the stack).
    cost = jnp.asarray(_clouds_with_duplicates_and_ties(17, seed=5))
    b, n, _ = cost.shape
    state = _auction.State(prices=jnp.zeros((b, n)), owner=jnp.full((b, n), n, jnp.int32),
                           assignment=jnp.full((b, n), -1, jnp.int32),
                           epsilon=jnp.full((b,), 0.5), done=jnp.zeros((b,), bool),
                           iteration=jnp.zeros((), jnp.int32))
    queue, count, unassigned = _pooled.initial_queue(state, 16)

    def step(state, queue, count, unassigned, k):
        state, queue, count, unassigned, _ = _pooled.bid_round(
            cost, state, k, queue, count, unassigned, _pooled.pad_buffer(k, n, cost.dtype))
        return _pooled.next_phase(cost, state, jnp.asarray(1e-3), 5.0, queue, count,
                                  unassigned, _pooled.pad_buffer(n, n, cost.dtype))[:4]

    step = jax.jit(step, static_argnums=4)
    for i in range(300):
        state, queue, count, unassigned = step(state, queue, count, unassigned, (16, 4)[i % 2])
        state = state._replace(iteration=state.iteration + 1)
        assignment = np.asarray(state.assignment)
        np.testing.assert_array_equal(unassigned, np.sum(assignment < 0, 1))
        bidding = (assignment < 0) & ~np.asarray(state.done)[:, None]
        stacked = np.asarray(queue)[:int(count)]
        np.testing.assert_array_equal(np.sort(stacked), np.flatnonzero(bidding))
    assert np.all(state.done)
