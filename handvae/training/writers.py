"""Metric writers of a run: TensorBoard event files (tensorboardX) and ``metrics.jsonl``."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

import tensorboardX

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class MetricWriter:
    """Writes scalars as ``<split>/<name>`` TensorBoard tags and as one JSON line per call.

    Each line of ``<workdir>/metrics.jsonl`` is ``{"step": int, "split": "train" |
    "validation" | "test", "time": unix seconds, <name>: float, ...}``; evaluation lines also
    carry ``"info"``: where the numbers come from (data set, data split, number of examples,
    checkpoint; ``handvae.evaluation.evaluator.provenance``).

    Args:
      workdir: the run's work directory.
      enabled: False on non-main processes (writes nothing).
    """

    def __init__(self, workdir: str, *, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        self._jsonl = open(os.path.join(workdir, METRICS_FILE), "a")
        self._tensorboard = tensorboardX.SummaryWriter(os.path.join(workdir, TENSORBOARD_DIR))

    def write(self, step: int, split: str, scalars: Mapping[str, float],
              info: Mapping[str, Any] | None = None) -> None:
        """Writes ``scalars`` at ``step`` under ``split`` (and ``info``, JSON only) and
        flushes both files."""
        if not self.enabled:
            return
        values = {k: float(v) for k, v in scalars.items()}
        for name, value in values.items():
            self._tensorboard.add_scalar(f"{split}/{name}", value, step)
        self._tensorboard.flush()
        record = {"step": int(step), "split": split, "time": time.time(), **values}
        if info is not None:
            record["info"] = dict(info)
        # NaN/Inf are written as JSON's non-standard tokens rather than dropped.
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tensorboard.close()


def read_metrics(workdir: str, split: str | None = None) -> list[dict]:
    """The records of ``<workdir>/metrics.jsonl`` (optionally only one split), in order."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if split is None or r["split"] == split]
