"""Which example every row of every training batch reads: shuffled index streams.

Two settings of the paper's Sec. 5.3 / Fig. 8 ("we sample the first m% samples as labelled
data ... In the supervised training setting, we train the networks with only m% samples. In the
weakly-supervised setting, besides fully supervised training on m% data, we also train the
'RC2C' sub-parts with the rest (100−m)% samples simultaneously"):

* ``data.train_fraction`` f ∈ (0, 1]: the split is cut to its first ``round(f·n)`` examples
  (the supervised baseline at m% is f = m, ``labelled_fraction`` = 1);
* ``data.labelled_fraction`` m ∈ (0, 1]: the first ``round(m·n_f)`` examples are labelled.
  With m < 1 (weak supervision) every batch holds a fixed number of labelled rows, drawn from
  a labelled stream, and a fixed number of unlabelled rows from an unlabelled stream, so every
  step sees labels (a uniform draw at m = 5 %, batch 32 leaves 19 % of the steps without one).
  ``data.weak_batch`` says how (the paper is silent on batch composition):

  - ``"added"`` (default, Sec. 5.3 read literally: "besides fully supervised training on m%
    data, we also train the 'RC2C' sub-parts with the rest"): the supervised setting's whole
    batch of B labelled rows plus B unlabelled rows, a global batch of 2B
    (:func:`rows_per_step`). The supervised terms see exactly the supervised baseline's batch.
  - ``"split"``: B rows of which ``data.labelled_per_batch`` are labelled (0: ``B // 2``).
    Measured at the cpu scale (``experiments/results/cpu/README.md``): half the batch left the
    supervised terms 16 rows and cost +4.6 to +5.9 mm at every m; a proportional mix
    (``round(m·B)``, 2 of 32 at m = 5 %) left the RGB → pose path at the constant guess.

Each stream is a fresh permutation per epoch drawn from ``(seed, stream, epoch)``; row r of
global batch k reads a position that depends only on (k, r), so batch k depends only on
(seed, k) and resuming at k reproduces the uninterrupted stream.

Decision (moved from WORKSPACE.md)

**Weak-supervision batches** (issue 23; `data.weak_batch`). Sec. 5.3: "besides fully
supervised training on m% data, we also train the 'RC2C' sub-parts with the rest
(100−m)% samples simultaneously". The default `"added"` follows it: every step holds the
supervised setting's whole batch of B labelled rows plus B unlabelled rows (a global batch
of 2B; unlabelled rows train the RC2C terms only). The paper is silent on the mix beyond
that. The earlier defaults split one batch of B: a proportional mix (2 of 32 labelled at
m = 5 %) left the RGB → pose path at the constant guess, and half the batch (16 + 16) cost
+4.6 to +5.9 mm against the supervised baseline at every m, because the supervised terms
saw 16 rows instead of 32; the 32 + 32 ablation matched the baseline (30.80 vs 30.52 mm,
one seed; `experiments/results/cpu/README.md`). `"split"` keeps the half mix as an option.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

_EPOCH_SALT = 0x5EED
_UNLABELLED_SALT = 0x0F1A
WEAK_BATCHES = ("added", "split")


def _weak_batch(data_config: Any) -> str:
    # absent in configs saved before the field: those runs split the batch
    mix = str(data_config.get("weak_batch", "split"))
    if mix not in WEAK_BATCHES:
        raise ValueError(f"data.weak_batch must be one of {WEAK_BATCHES}, got {mix!r}")
    return mix


def is_weak(data_config: Any) -> bool:
    """Whether ``config.data`` asks for weak supervision (``labelled_fraction`` < 1)."""
    return float(data_config.get("labelled_fraction", 1.0)) < 1.0


def rows_per_step(data_config: Any, batch_size: int) -> int:
    """Rows of one global training batch: ``2 · batch_size`` for weak supervision with
    ``data.weak_batch = "added"`` (B labelled + B unlabelled), else ``batch_size``."""
    if is_weak(data_config) and _weak_batch(data_config) == "added":
        return 2 * batch_size
    return batch_size


@dataclasses.dataclass(frozen=True)
class Plan:
    """How one training run draws rows (all counts are examples of the split / global rows).

    Attributes:
      num_train: examples used (the first ``round(train_fraction · n)``).
      num_labelled: the first ``num_labelled`` of them are labelled.
      labelled_per_batch: labelled rows per global batch (= global batch when not weak).
      global_batch: rows per global batch.
    """
    num_train: int
    num_labelled: int
    labelled_per_batch: int
    global_batch: int

    @property
    def weak(self) -> bool:
        return self.num_labelled < self.num_train


def make_plan(data_config: Any, size: int, global_batch: int) -> Plan:
    """Validates the weak-supervision fields of ``config.data`` and resolves them.

    Raises:
      ValueError: naming ``data.train_fraction``, ``data.labelled_fraction`` or
        ``data.labelled_per_batch`` when it is out of range or leaves a stream empty.
    """
    train_fraction = float(data_config.get("train_fraction", 1.0))
    if not 0.0 < train_fraction <= 1.0:
        raise ValueError(f"data.train_fraction must be in (0, 1], got {train_fraction}")
    num_train = int(round(train_fraction * size))
    if num_train < 1:
        raise ValueError(f"data.train_fraction={train_fraction} keeps no example of the "
                         f"{size}-example split; raise it")
    fraction = float(data_config.get("labelled_fraction", 1.0))
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"data.labelled_fraction must be in (0, 1], got {fraction}")
    num_labelled = num_train if fraction == 1.0 else int(round(fraction * num_train))
    if num_labelled < 1:
        raise ValueError(f"data.labelled_fraction={fraction} labels none of the {num_train} "
                         "training examples; raise it")
    if num_labelled == num_train:
        if fraction < 1.0:
            raise ValueError(f"data.labelled_fraction={fraction} leaves no unlabelled frame "
                             f"of {num_train} (weak supervision needs some); use "
                             "labelled_fraction=1 for fully supervised training")
        return Plan(num_train, num_labelled, global_batch, global_batch)
    per_batch = int(data_config.get("labelled_per_batch", 0))
    if _weak_batch(data_config) == "added":
        if per_batch != 0:
            raise ValueError(f"data.labelled_per_batch={per_batch} applies to "
                             "data.weak_batch=\"split\" only; with \"added\" every batch "
                             "holds the whole labelled batch plus as many unlabelled rows "
                             "(set labelled_per_batch=0, or weak_batch=\"split\")")
        if global_batch % 2:
            raise ValueError(f"data.weak_batch=\"added\" needs an even global batch "
                             f"(B labelled + B unlabelled rows), got {global_batch}")
        return Plan(num_train, num_labelled, global_batch // 2, global_batch)
    if per_batch == 0:
        per_batch = max(1, global_batch // 2)
    if not 1 <= per_batch < global_batch:
        raise ValueError(f"data.labelled_per_batch must be in [1, batch size − 1] = "
                         f"[1, {global_batch - 1}] with weak supervision (0: half the batch), "
                         f"got {per_batch}")
    return Plan(num_train, num_labelled, per_batch, global_batch)


class _Stream:
    """Examples ``[lo, hi)`` in a fresh permutation per epoch: position → example index."""

    def __init__(self, lo: int, hi: int, seed: int, salt: int):
        self._lo, self._size, self._seed, self._salt = lo, hi - lo, seed, salt
        self._permutations: dict[int, np.ndarray] = {}

    def __getitem__(self, position: int) -> int:
        epoch = position // self._size
        if epoch not in self._permutations:
            if len(self._permutations) > 2:
                self._permutations.pop(min(self._permutations))
            self._permutations[epoch] = np.random.default_rng(
                [self._seed, epoch, self._salt]).permutation(self._size)
        return self._lo + int(self._permutations[epoch][position % self._size])


class RowIndex:
    """``(step, row) → (example index, labelled)`` for rows of the global batch."""

    def __init__(self, plan: Plan, seed: int):
        self.plan = plan
        if plan.weak:
            self._labelled = _Stream(0, plan.num_labelled, seed, _EPOCH_SALT)
            self._unlabelled = _Stream(plan.num_labelled, plan.num_train, seed,
                                       _UNLABELLED_SALT)
        else:  # the pre-weak-supervision stream: same permutations, same batches
            self._labelled = _Stream(0, plan.num_train, seed, _EPOCH_SALT)

    def __call__(self, step: int, row: int) -> tuple[int, bool]:
        plan = self.plan
        if not plan.weak:
            return self._labelled[step * plan.global_batch + row], True
        # Row r is labelled iff ⌊(r+1)L/G⌋ > ⌊rL/G⌋: L rows spread evenly over the global
        # batch, independent of how processes split it.
        g, lab = plan.global_batch, plan.labelled_per_batch
        before = row * lab // g
        if (row + 1) * lab // g > before:
            return self._labelled[step * lab + before], True
        return self._unlabelled[step * (g - lab) + row - before], False
