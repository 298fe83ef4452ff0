"""Orbax checkpoints of a work directory: the latest k, the best by validation EPE, resume.

Layout (see WORKSPACE.md, "Work directories")::

    <workdir>/config.json          the full config of the run
    <workdir>/checkpoints/<step>/  the last ``config.keep_checkpoints`` train states
    <workdir>/checkpoints_best/<step>/  the train state with the lowest mean EPE so far

Both are whole :class:`~handvae.training.state.TrainState` pytrees written by
``ocp.args.StandardSave``; a step's directory appears atomically (orbax writes to a
temporary name and renames), so a run killed mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from jax.sharding import Mesh

from handvae.models import vae
from handvae.training import sharding
from handvae.training.state import TrainState, abstract_train_state

CONFIG_FILE = "config.json"
LATEST_DIR = "checkpoints"
BEST_DIR = "checkpoints_best"
BEST_METRIC = "mean_epe_mm"  # lower is better
WHICH = ("best", "latest")


class Checkpoints:
    """The two checkpoint managers of a work directory.

    Args:
      workdir: the run's work directory.
      keep: how many of the latest periodic checkpoints to keep.
      async_save: write in a background thread (the step continues meanwhile).
    """

    def __init__(self, workdir: str, *, keep: int = 3, async_save: bool = True,
                 read_only: bool = False):
        workdir = os.path.abspath(workdir)
        self.workdir = workdir
        # Read-only managers get no retention options (orbax warns that it ignores them).
        writing = {"create": False, "save_interval_steps": 0} if read_only else {"create": True}
        self.latest = ocp.CheckpointManager(
            os.path.join(workdir, LATEST_DIR),
            options=ocp.CheckpointManagerOptions(
                read_only=read_only, enable_async_checkpointing=async_save,
                **({} if read_only else {"max_to_keep": keep}), **writing))
        self.best = ocp.CheckpointManager(
            os.path.join(workdir, BEST_DIR),
            options=ocp.CheckpointManagerOptions(
                best_fn=lambda metrics: metrics[BEST_METRIC], best_mode="min",
                keep_checkpoints_without_metrics=False, read_only=read_only,
                enable_async_checkpointing=async_save,
                **({} if read_only else {"max_to_keep": 1}), **writing))

    def latest_step(self) -> int | None:
        """Step of the newest periodic checkpoint, or None."""
        return self.latest.latest_step()

    def best_step(self) -> int | None:
        """Step of the checkpoint with the lowest validation EPE, or None."""
        return self.best.best_step()

    def save(self, step: int, state: TrainState) -> None:
        """Saves ``state`` as periodic checkpoint ``step`` (skips a step already saved)."""
        if step in self.latest.all_steps():
            return
        self.latest.save(step, args=ocp.args.StandardSave(state), force=True)

    def save_best(self, step: int, state: TrainState, metrics: dict[str, float]) -> None:
        """Offers ``state`` to the best-by-EPE manager with its validation ``metrics``."""
        if BEST_METRIC not in metrics:
            raise ValueError(f"save_best needs metrics[{BEST_METRIC!r}], got {sorted(metrics)}")
        if step in self.best.all_steps():
            return
        self.best.save(step, args=ocp.args.StandardSave(state),
                       metrics={k: float(v) for k, v in metrics.items()}, force=True)

    def restore(self, abstract_state: TrainState, which: str = "latest",
                step: int | None = None) -> TrainState:
        """Reads a checkpoint into the shapes, dtypes and shardings of ``abstract_state``.

        Args:
          abstract_state: pytree of ``jax.ShapeDtypeStruct`` (with shardings) or arrays.
          which: "latest" (periodic checkpoints) or "best" (lowest validation EPE).
          step: a specific step; default the newest (or the best).

        Raises:
          FileNotFoundError: when the work directory holds no such checkpoint.
        """
        if which not in WHICH:
            raise ValueError(f"which must be one of {WHICH}, got {which!r}")
        manager = self.latest if which == "latest" else self.best
        if step is None:
            step = manager.latest_step() if which == "latest" else manager.best_step()
        if step is None:
            raise FileNotFoundError(f"no {which} checkpoint in {manager.directory}; train "
                                    f"first with `python -m experiments.train --workdir "
                                    f"{self.workdir}`")
        return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

    def wait(self) -> None:
        """Blocks until background saves have finished."""
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()


def sharded_abstract(state: Any, mesh: Mesh) -> Any:
    """``state``'s shapes and dtypes with the replicated sharding of ``mesh`` (restore target)."""
    rep = sharding.replicated(mesh)
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), state)


def write_config(config: ml_collections.ConfigDict, workdir: str) -> str:
    """Writes ``<workdir>/config.json`` and returns its path."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, CONFIG_FILE)
    with open(path, "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
        f.write("\n")
    return path


def read_config(workdir: str) -> ml_collections.ConfigDict:
    """Reads ``<workdir>/config.json`` written by :func:`write_config`."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: is {workdir!r} a training work directory "
                                "(made by `python -m experiments.train --workdir ...`)?")
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def restore_for_inference(workdir: str, which: str = "best", *, step: int | None = None
                          ) -> tuple[ml_collections.ConfigDict, Any, dict[str, Any]]:
    """The config, model and variables of a trained run, for evaluation.

    Args:
      workdir: a work directory written by ``train_and_evaluate``.
      which: "best" (lowest validation mean EPE; falls back to "latest" when the run never
        evaluated) or "latest".
      step: a specific checkpoint step instead of the best/newest.

    Returns:
      ``(config, model, variables)`` where ``variables = {'params', 'batch_stats'}`` live on
      the default device, ready for ``handvae.models.vae.predict_pose(model, variables, rgb)``.
    """
    config = read_config(workdir)
    model = vae.build_model(config.model)
    checkpoints = Checkpoints(workdir, read_only=True, async_save=False)
    try:
        if which == "best" and checkpoints.best_step() is None and step is None:
            logging.warning("%s has no best checkpoint (no evaluation ran); using the latest",
                            workdir)
            which = "latest"
        mesh = sharding.make_mesh(jax.local_devices()[:1])
        abstract = sharded_abstract(abstract_train_state(config, model), mesh)
        state = checkpoints.restore(abstract, which=which, step=step)
    finally:
        checkpoints.close()
    return config, model, state.variables()
