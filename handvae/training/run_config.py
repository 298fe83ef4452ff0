"""A run's config: checked before anything is written, compared with the stored one on resume.

``<workdir>/config.json`` is the record of a trained run (``experiments.evaluate`` and
``restore_for_inference`` rebuild the model from it). It is written only once the config is
known to be good: validated (:func:`validate`), the model built and the checkpoint restored.
On resume, :func:`check_resume` refuses changes that alter parameter shapes or the strategy
(:data:`FROZEN_FIELDS`, naming the fields) and returns the others, which the loop records in
``<workdir>/config_changes.jsonl`` (:func:`record_changes`) before rewriting ``config.json``.

Decision (moved from WORKSPACE.md)

**A run's config is written last** (issue 14 item 2): validate → build → restore → write.
On resume the stored config is compared with the new one; shape/strategy fields are
refused (named), the rest accepted and logged to `config_changes.jsonl`. No non-strict
restore is used or suggested; `num_train_steps ≤ 0` is an error.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import ml_collections

from handvae.data import device_augment
from handvae.evaluation import evaluator

CHANGES_FILE = "config_changes.jsonl"
CONFIG_FILE = "config.json"  # the record of a run (written by handvae.training.checkpoint)
# Fields whose change alters the train state's shapes (or what the run is): refused on resume.
# Every model field except the KL weights (beta*), and the data sizes the model is built for.
FROZEN_DATA_FIELDS = ("data.image_size", "data.num_points", "data.heatmap_size")


def is_frozen(field: str) -> bool:
    """Whether changing ``field`` ("model.latent_dim") on resume is refused."""
    if field.startswith("model."):
        return not field.split(".")[-1].startswith("beta")
    return field in FROZEN_DATA_FIELDS


# Sizes that must be positive integers (a zero or negative one fails deep inside the model).
# (``model.image_size``/``num_points`` follow the data's through references.)
POSITIVE_SIZE_FIELDS = ("data.image_size", "data.num_points", "model.latent_dim",
                        "model.resnet_width")


def _field(config: ml_collections.ConfigDict, dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not hasattr(node, "get"):
            return None
        node = node.get(part)
    return node


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks the fields the loop needs before any file is written.

    Raises:
      ValueError: naming the field: ``num_train_steps`` ≤ 0, a selection split that is the
        test split (``data.validation_split``), ``batch_size`` ≤ 0, or one of
        :data:`POSITIVE_SIZE_FIELDS` (``model.latent_dim``, ``data.num_points``, ...) that is
        not a positive integer.
    """
    steps = config.get("num_train_steps")
    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"config.num_train_steps must be a positive integer, got {steps!r}")
    if int(config.batch_size) <= 0:
        raise ValueError(f"config.batch_size must be positive, got {config.batch_size}")
    for name in POSITIVE_SIZE_FIELDS:
        value = _field(config, name)
        if value is None:  # a stand-in model's config may lack it
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"config.{name} must be a positive integer, got {value!r}; set "
                             f"--config.{name} to a size ≥ 1")
    evaluator.check_selection_split(config.data)
    device_augment.resolve_augment_on(config.data)   # data.augment_on="device" needs the cache


def check_workdir(workdir: str) -> None:
    """Refuses a ``workdir`` that is a file or lies below one, before anything is written.

    Raises:
      NotADirectoryError: naming the file in the way.
    """
    path = os.path.abspath(workdir)
    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent
    if not os.path.isdir(path):
        where = "is" if path == os.path.abspath(workdir) else f"lies below {path}, which is"
        raise NotADirectoryError(f"--workdir {workdir} {where} a file, not a folder; choose "
                                 "another --workdir")


def lost_config_message(workdir: str) -> str:
    """The error for a work directory whose checkpoints do not fit and whose config is lost."""
    return (f"{workdir} holds checkpoints but no {CONFIG_FILE}, and none of them fits this "
            "config's shapes (a model field such as model.latent_dim differs from the run's); "
            "resume with the config the run was trained with, or choose a new --workdir")


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as ``{"a.b.c": leaf}`` (a config's JSON, field by dotted name)."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def _as_json(config: ml_collections.ConfigDict) -> dict[str, Any]:
    # The stored form (tuples become lists), so equal configs compare equal.
    return json.loads(config.to_json_best_effort(sort_keys=True))


def diff(stored: ml_collections.ConfigDict, new: ml_collections.ConfigDict
         ) -> dict[str, tuple[Any, Any]]:
    """Fields that differ: ``{"a.b": (stored value, new value)}`` (missing → None)."""
    old, cur = flatten(_as_json(stored)), flatten(_as_json(new))
    return {k: (old.get(k), cur.get(k)) for k in sorted(set(old) | set(cur))
            if old.get(k) != cur.get(k)}


def check_resume(stored: ml_collections.ConfigDict, new: ml_collections.ConfigDict,
                 workdir: str) -> dict[str, tuple[Any, Any]]:
    """The accepted changes of a resumed run, or an error naming the refused ones.

    Args:
      stored: the run's ``config.json``.
      new: the config it is resumed with.
      workdir: for the message.

    Returns:
      ``{field: (old, new)}`` of the changes that keep shapes and strategy (e.g. more steps).

    Raises:
      ValueError: listing every changed field that alters shapes or the strategy.
    """
    changes = diff(stored, new)
    refused = {k: v for k, v in changes.items() if is_frozen(k)}
    if refused:
        listed = "; ".join(f"{k}: {old!r} → {cur!r}" for k, (old, cur) in refused.items())
        raise ValueError(
            f"{workdir} holds a run trained with another model: {listed}. These fields set the "
            "checkpoint's shapes or strategy and cannot change on resume. Use the stored "
            f"values (see {os.path.join(workdir, 'config.json')}) or a new --workdir.")
    return changes


def record_changes(workdir: str, step: int, changes: dict[str, tuple[Any, Any]]) -> None:
    """Appends one line ``{"time", "resumed_at_step", "changes": {field: [old, new]}}`` to
    ``<workdir>/config_changes.jsonl`` (nothing when there are no changes)."""
    if not changes:
        return
    record = {"time": time.time(), "resumed_at_step": int(step),
              "changes": {k: list(v) for k, v in changes.items()}}
    with open(os.path.join(workdir, CHANGES_FILE), "a") as f:
        f.write(json.dumps(record) + "\n")
