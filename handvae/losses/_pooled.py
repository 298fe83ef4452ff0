"""The CPU ("pooled") loop of the batched ε-scaling auction (see :mod:`handvae.losses.emd`).

Each round is a Jacobi bidding round of up to k unassigned rows pooled over the whole batch;
rounds run in an inner ``lax.while_loop`` per bidder tier until the tier changes or an element
has all its rows assigned; then the phase changes run (one element at a time) and the outer
loop picks the next tier.

The unassigned rows live in a stack (``queue[:count]``, flat indices b·N + i): a round pops
the top k, and pushes back the bidders that lost their column and the rows the winners
evicted; a phase reset pushes the rows it unassigns. Invariant: the stack holds exactly the
unassigned rows of the unfinished elements, each once (bidders hold no column, so none is
evicted; winners take distinct columns, so they evict distinct rows; a finished element has
no unassigned row). So a round's bookkeeping is O(k), not O(B·N), and every one of its k slots
holds a bidder (no hashing, no empty slots); k is the smallest tier ≥ the stack's size
(``TIERS``), capped by the largest. Any non-empty subset of the unassigned rows may bid in a
round without breaking ε-CS or termination (Bertsekas 1988), so the guarantees of
:mod:`handvae.losses.emd` (within (1 + ε) of the optimum where ``converged``) are unchanged.

Tiers stop at 128: XLA:CPU splits ops of ≥ ~512 KB over its thread pool, and on a loaded
2-core machine each such hand-off cost more than it saved (see ``_in_place``); larger tiers,
even unsplit, measured slower (32×256 hand-like clouds, WORKSPACE.md).

Design history and measurements (moved from WORKSPACE.md)

**Pooled loop, second version (issue 13 item 2; kept).** The paper is silent on the EMD solver
(Eq. 9 defines the distance only), so this is an implementation choice for speed; the
algorithm (forward auction, ε-scaling, the same ε-CS reset, the same (1 + ε) guarantee and
`converged` flag) is unchanged, only how the pooled rounds run. What was tried, in order
(32×256 hand-like, rounds are load-free, times at load 5–7 with nice 10, old and new code
compiled in one process and timed interleaved with scipy):
1. *The reset already unassigns only ε-CS violators* (`held ≥ max − ε_new`, idea 1 of the
   brief). Bids per phase were 19 / 28 / 23 / 19 / 11 % of ~160k bids (5 phases), ~140 of 256
   rows re-bid per phase and each made ~5.5 bids (eviction chains). Lowering the held
   column's price of each violator by (δ − α·ε_new) and re-checking (1–6 passes, α = 0–1):
   kept rows 102 → up to 213 of 256, bids −19 %, rounds 2975 → 2617–3750, time unchanged or
   worse (the lowered prices are bid up again). Not kept.
2. *Hashed slots → a stack* (`_pooled.py`): the unassigned rows of unfinished elements live in
   `queue[:count]`; a round pops the top k, pushes back losers and evicted rows (O(k), no
   O(B·N) hash + scatter per round, every slot a bidder; slots used per bid 1.9 → ~1.3).
   Proof of the invariant (stack = unassigned rows of unfinished elements, each once): bidders
   are unassigned so never evicted; winners hold distinct columns so evict distinct rows; a
   reset pushes exactly the rows it unassigns; a finished element has no unassigned row.
   Any non-empty subset of unassigned rows may bid (Bertsekas), so termination and ε-CS
   are those of the forward auction. 0.68× → 0.95× scipy; rounds 2975 → 2679.
3. *Where the rest went*: pinned to one core (`taskset -c 0`) the same code ran in 82 ms instead
   of 144 ms. XLA:CPU's parallel-task pass splits every fusion whose cost counts ≥ 512 KB of
   operand over its thread pool, and a gather from the [B, N, N] benefit at a dynamic index
   counts the whole 8 MB: each round's gather (and each reset's [N, N] read) became a hand-off
   to the other core, which under the training queue's load waited ~20–40 µs (profile:
   gather fusion 41 µs per round on 2 cores, 1.8 µs pinned). The gather now writes into a
   loop-carried [k + 1, N] buffer at a dynamic offset that is always 0 (an in-place
   dynamic-update-slice, never split; the spare row keeps XLA from simplifying it away), and
   rounds run in an inner `while_loop` per tier (the buffer stays loop-carried; phase changes
   run between inner loops, so the per-round nested reset loop and `lax.switch` are gone).
   Tiers ≥ 256 bidders still had split ops ([256, 256] top-2 temporaries), so the tiers are
   16, 32, 64, 128 (rounds 2679 → 3306). Together: ~145 → 72–76 ms (0.95× → ~1.85×).
   Splitting a 256/512/1024-bidder round's top-2 into 128-row blocks cut rounds back to
   ~2680 but cost more (72–84 vs 70 ms).
4. *Setup* (7 → 5 ms of ~67): EMD costs from explicit differences instead of the matmul form
   (0.53 vs 1.34 ms, and no cancellation), finiteness from the cost's max/min (shared with the
   cost scale), warm start from the cost (no negated [B, N, N] copy), the completion sorts
   skipped when every row holds a column.
Not kept (no gain beyond noise, ±3 %): a one-pass top-2 (strict second + tie count, or float
argmin) was 1.1–1.5× slower than `top2`; pairwise [k, k] conflict resolution instead of the
two [B·N] scatters (+40 %); tiers (8..128), (4..128), (8..64), (16, 64, 256, 1024); ε = 1e-2
and θ = 3 / 8 with the new loop (rounds 1947–2914, time ±8 %, gap up to 4e-5 mean). K-nearest
candidate lists (idea 3) were not built: `lax.top_k` of the 33 nearest per row costs 20–36 ms
for 32×256 on this machine, more than the whole solve now. Forward–reverse (idea 2) was not
tried for lack of time. The GPU variants are unchanged (their code paths still use the masked
benefit, `warm_start` and the completion sorts); "dense" and "pallas" tests pass on CPU.
Figures, 2026-11-26 03:43–03:47, back to back on the shared 2-core machine with `nice -n 10`
(`python benchmarks/losses.py --sizes 32x256 8x1024 8x2048`, medians of 5 / 3 runs; main's
checkout at 72311a3, then this branch at 3118ca7; auction s / scipy s, scipy/auction, mean
gap, rounds, 1-min load):

- uniform 32×256: before (main): 0.224 / 0.156, 0.70×, 1.2e-5, 2241, 6.9; after (this branch):
  0.067 / 0.142, 2.12×, 9.2e-6, 2590, 5.5.
- hand 32×256: before (main): 0.242 / 0.136, 0.56×, 1.6e-5, 3887, 7.1; after (this branch):
  0.076 / 0.142, 1.87×, 1.1e-5, 3702, 5.6.
- hand 8×1024: before (main): 0.991 / 1.321, 1.33×, 1.2e-5, 18 953, 6.9; after (this branch):
  0.545 / 1.218, 2.23×, 1.9e-5, 11 861, 5.7.
- hand 8×2048: before (main): 4.40 / 11.18, 2.54×, 1.8e-5, 25 391, 5.9; after (this branch):
  2.33 / 10.65, 4.56×, 1.9e-5, 26 377, 5.5.

Hand-like 32×256 in m / dm / mm, mean gap: 1.5e-5 / 8.6e-6 / 1.3e-5 (before), 1.5e-5 /
1.4e-5 / 1.4e-5 (after); max gaps ≤ 8.1e-5, all converged. An earlier back-to-back pair
(03:34–03:38, load 5.3–5.7, this branch at 179cf92) gave 0.59× → 1.89× (hand 32×256), 0.90× →
2.18× (uniform), 1.37× → 2.24× (8×1024), 2.74× → 4.35× (8×2048); the same code timed
interleaved with scipy in one process on the test-suite's hand clouds (3306 rounds) gave
2.0–2.05×. So the issue's ≥ 2× on hand-like 32×256 is reached on uniform clouds, 8×1024 and
8×2048, and missed narrowly (1.87–1.89×) on the benchmark's hand-like 32×256 clouds.
Tests: `tests/losses/test_losses_emd.py::test_pooled_stack_holds_exactly_the_unassigned_rows`
(stack = the unassigned rows, each once, after every round and reset) and
`tests/losses/test_losses_emd_relative.py::test_pooled_emd_with_a_capped_bidder_stack_is_within_guarantee_in_any_unit`
(more unassigned rows than the top tier; m, dm, mm against scipy: mean gap ≤ 1e-4, every gap
within (1 + ε)); the existing m/dm/mm, integer-exactness, cut-off and NaN tests run the new
loop as the CPU default.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from handvae.losses._auction import State, top2

Array = jax.Array

TIERS = (16, 32, 64, 128)
TRIANGLE = 64


def _prefix_count(flags: Array) -> Array:
    """Inclusive prefix sum of a 1-D bool array as int32: up to TRIANGLE entries a masked
    [n, n] sum (one fused reduction; XLA:CPU's cumsum is ~5 small ops), then reduce_window
    (a few µs below 512 entries), then an associative scan (O(n log n))."""
    values = flags.astype(jnp.int32)
    n = values.shape[0]
    if n <= TRIANGLE:
        index = jnp.arange(n)
        return jnp.sum(jnp.where(index[None, :] <= index[:, None], values[None, :], 0), axis=1)
    if n <= 512:
        return jnp.cumsum(values)
    return jax.lax.associative_scan(jnp.add, values)


def push(queue: Array, count: Array, items: Array, flags: Array) -> tuple[Array, Array]:
    """Appends ``items[flags]`` (flat row indices, in order) at ``queue[count:]``."""
    position = count + _prefix_count(flags) - 1
    size = queue.shape[0]
    queue = queue.at[jnp.where(flags, position, size)].set(items, mode="drop")
    return queue, count + jnp.sum(flags, dtype=jnp.int32)


def bid_round(cost: Array, state: State, k: int, queue: Array, count: Array,
              unassigned: Array, scratch: Array
              ) -> tuple[State, Array, Array, Array, Array]:
    """One Jacobi round in which the top min(k, count) rows of the stack bid at once.

    Any non-empty subset of the unassigned rows may bid without breaking the auction's
    invariants (ε-CS, monotone prices) or its termination. Conflicts on a column go to the
    highest bid, ties to the lowest row. Returns the state, the stack (losers and evicted rows
    pushed) and ``unassigned`` ([B] rows without a column per element), all updated in O(k·N).
    """
    b, n, _ = cost.shape
    total = b * n
    start = jnp.maximum(count - k, 0)
    popped = jax.lax.dynamic_slice(queue, (start,), (k,))                # [k]
    active = jnp.arange(k, dtype=jnp.int32) < count - start
    safe = jnp.where(active, popped, 0)
    element, row = jax.lax.div(safe, n), jax.lax.rem(safe, n)
    prices = state.prices.reshape(-1)
    values = -cost.reshape(total, n)[safe] - state.prices[element]   # benefit − price [k, N]
    scratch = _in_place(scratch, values, start)                              # [k + 1, N]
    best, best_col, second = top2(scratch[:k])
    flat_col = element * n + best_col
    price_best = prices[flat_col]
    bid = price_best + (best - second) + state.epsilon[element]
    # Progress even when ε is below the float spacing of the price.
    bid = jnp.maximum(bid, jnp.nextafter(price_best, jnp.inf))
    bid = jnp.where(active, bid, -jnp.inf)
    # The highest bid on a column wins it; ties go to the lowest row index.
    top_bid = jnp.full((total,), -jnp.inf, bid.dtype).at[flat_col].max(bid)
    candidate = active & (bid == top_bid[flat_col])
    winner = jnp.full((total,), n, jnp.int32).at[flat_col].min(jnp.where(candidate, row, n))
    won = candidate & (winner[flat_col] == row)
    owner = state.owner.reshape(-1)
    previous = owner[flat_col]                                           # n: the column was free
    evicted = jnp.where(won & (previous < n), element * n + previous, total)
    target = jnp.where(won, flat_col, total)                             # total: dropped
    # Evicted rows (held a column) and winners (held none) are disjoint: one scatter.
    assignment = state.assignment.reshape(-1).at[
        jnp.concatenate([evicted, jnp.where(won, safe, total)])].set(
        jnp.concatenate([jnp.full((k,), -1, jnp.int32), best_col]), mode="drop")
    owner = owner.at[target].set(row, mode="drop")
    prices = prices.at[target].set(bid, mode="drop")
    state = state._replace(prices=prices.reshape(b, n), owner=owner.reshape(b, n),
                           assignment=assignment.reshape(b, n))
    queue, count = push(queue, start, jnp.concatenate([safe, evicted]),
                        jnp.concatenate([active & ~won, evicted < total]))
    newly = (won & (previous == n)).astype(unassigned.dtype)
    return state, queue, count, unassigned.at[element].add(-newly), scratch


def _in_place(scratch: Array, values: Array, zero: Array) -> Array:
    """Writes values [r, N] into rows 0..r−1 of the loop-carried buffer scratch [r + 1, N].

    A fusion that reads the [B, N, N] cost at a dynamic index is split over XLA:CPU's
    thread pool (its cost model counts the whole operand): one hand-off per round, which on
    a loaded 2-core machine cost more than a small round's work. An in-place update of a
    loop-carried buffer (offset ``min(zero, 0)`` = 0, ``zero`` ≥ 0, unknown to the compiler)
    runs on the calling thread. The spare last row keeps the shapes different (else the
    update is simplified away); readers drop it.
    """
    return jax.lax.dynamic_update_slice(scratch, values, (jnp.minimum(zero, 0), 0))


def pad_buffer(rows: int, n: int, dtype) -> Array:
    """A [rows + 1, N] buffer for :func:`_in_place`."""
    return jnp.zeros((rows + 1, n), dtype)


def _reset_element(cost: Array, state: State, element: Array, queue: Array, count: Array,
                   unassigned: Array, scratch: Array
                   ) -> tuple[State, Array, Array, Array, Array]:
    """Starts the element's next phase: unassigns (and pushes) the pairs violating ε-CS for
    its new ε; the others keep their column (they satisfy ε-CS for the new ε)."""
    n = cost.shape[1]
    scratch = _in_place(scratch, -cost[element] - state.prices[element][None, :],
                        element)                                         # [N + 1, N]
    assignment = state.assignment[element]
    # Reductions over all N + 1 rows, results sliced: slicing the [N, N] block first costs a
    # copy that XLA:CPU splits over threads (an [N + 1, N] maximum is not split).
    held = scratch[jnp.arange(n), jnp.maximum(assignment, 0)]
    best = jnp.max(scratch, axis=1)[:n]
    keep = (assignment >= 0) & (held >= best - state.epsilon[element])
    owner = state.owner[element]
    owner = jnp.where((owner < n) & keep[jnp.minimum(owner, n - 1)], owner, n)
    state = state._replace(
        assignment=state.assignment.at[element].set(jnp.where(keep, assignment, -1)),
        owner=state.owner.at[element].set(owner))
    queue, count = push(queue, count, element * n + jnp.arange(n, dtype=jnp.int32), ~keep)
    unassigned = unassigned.at[element].set(n - jnp.sum(keep, dtype=unassigned.dtype))
    return state, queue, count, unassigned, scratch


def next_phase(cost: Array, state: State, final_epsilon: Array, scaling: float,
               queue: Array, count: Array, unassigned: Array, scratch: Array
               ) -> tuple[State, Array, Array, Array, Array]:
    """Elements with every row assigned: done at the final ε, else ε ← max(ε/θ, final ε).

    ``scratch``: a [N + 1, N] buffer from :func:`pad_buffer` (returned updated).
    """
    b = cost.shape[0]
    complete = (unassigned == 0) & ~state.done
    finished = complete & (state.epsilon <= final_epsilon)
    advance = complete & ~finished
    epsilon = jnp.where(advance, jnp.maximum(state.epsilon / scaling, final_epsilon),
                        state.epsilon)
    state = state._replace(epsilon=epsilon, done=state.done | finished)

    # Elements change phase at different rounds, usually one at a time: reset each alone in
    # O(N²) rather than the whole batch in O(B·N²).
    def body(carry):
        *carry, pending = carry
        element = jnp.min(jnp.where(pending, jnp.arange(b), b))
        carry = _reset_element(cost, carry[0], element, *carry[1:])
        return *carry, pending.at[element].set(False)

    *carry, _ = jax.lax.while_loop(lambda carry: jnp.any(carry[-1]), body,
                                   (state, queue, count, unassigned, scratch, advance))
    return tuple(carry)


def initial_queue(state: State, slots: int) -> tuple[Array, Array, Array]:
    """The stack of the unassigned rows of the unfinished elements ([B·N + slots], count) and
    the unassigned rows per element ([B])."""
    b, n = state.assignment.shape
    bidding = (state.assignment < 0) & ~state.done[:, None]
    queue = jnp.full((b * n + slots,), b * n, jnp.int32)
    queue, count = push(queue, jnp.zeros((), jnp.int32), jnp.arange(b * n, dtype=jnp.int32),
                        bidding.reshape(-1))
    return queue, count, jnp.sum(state.assignment < 0, axis=1, dtype=jnp.int32)


def pooled_loop(cost: Array, state: State, final_epsilon: Array, scaling: float,
                max_iterations: int) -> State:
    """Runs rounds of up to k pooled bidders (k from ``TIERS``) until every element is done
    or ``max_iterations`` rounds have run."""
    b, n, _ = cost.shape
    slots_needed = 1 << max(b * n - 1, 1).bit_length()
    tiers = tuple(sorted({min(k, slots_needed) for k in TIERS}))
    thresholds = jnp.asarray(tiers[:-1], jnp.int32)
    lower = (-1,) + tiers[:-1]   # -1: an empty stack still runs next_phase
    upper = tiers[:-1] + (b * n,)

    def running(state):
        return jnp.any(~state.done) & (state.iteration < max_iterations)

    # Rounds run in an inner loop per tier while the stack's size stays in the tier's range
    # (lower, upper] and no element has all its rows assigned; phase changes run between
    # inner loops. So the tier's [k + 1, N] scratch buffer is loop-carried (updated in
    # place), and the tier switch and the phase bookkeeping (a nested loop) cost one
    # conditional per tier change or completed phase, not one per round.
    def make_tier(i, k):
        def inner_cond(carry):
            state, _, count, unassigned, _ = carry
            complete = jnp.any((unassigned == 0) & ~state.done)
            return running(state) & (count > lower[i]) & (count <= upper[i]) & ~complete

        def inner_body(carry):
            state, queue, count, unassigned, scratch = carry
            state, queue, count, unassigned, scratch = bid_round(
                cost, state, k, queue, count, unassigned, scratch)
            return (state._replace(iteration=state.iteration + 1), queue, count, unassigned,
                    scratch)

        def tier(state, queue, count, unassigned):
            scratch = pad_buffer(k, n, cost.dtype)
            state, queue, count, unassigned, _ = jax.lax.while_loop(
                inner_cond, inner_body, (state, queue, count, unassigned, scratch))
            return state, queue, count, unassigned
        return tier

    tier_loops = [make_tier(i, k) for i, k in enumerate(tiers)]

    def body(carry):
        state, queue, count, unassigned, scratch = next_phase(
            cost, carry[0], final_epsilon, scaling, *carry[1:])
        state, queue, count, unassigned = jax.lax.switch(
            jnp.sum(count > thresholds), tier_loops, state, queue, count, unassigned)
        return state, queue, count, unassigned, scratch

    queue, count, unassigned = initial_queue(state, tiers[-1])
    state, *_ = jax.lax.while_loop(lambda carry: running(carry[0]), body,
                                   (state, queue, count, unassigned,
                                    pad_buffer(n, n, cost.dtype)))
    return state
