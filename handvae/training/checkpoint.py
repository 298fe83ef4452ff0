"""Orbax checkpoints of a work directory: the latest k, the best by validation EPE, resume.

Layout (see WORKSPACE.md, "Work directories")::

    <workdir>/config.json          the full config of the run
    <workdir>/checkpoints/<step>/  the last ``config.keep_checkpoints`` train states
    <workdir>/checkpoints_best/<step>/  the train state with the lowest mean EPE so far

Both are whole :class:`~handvae.training.state.TrainState` pytrees written by
``ocp.args.StandardSave``; a step's directory appears atomically (orbax writes to a
temporary name and renames), so a run killed mid-save leaves the previous checkpoint intact.

A checkpoint damaged afterwards (a truncated or corrupt file, a step folder without its
``default/`` item) does not block a resume:
:meth:`Checkpoints.restore` tries the newest, logs one line naming the unreadable one and
the reason, and falls back to the next older one; :func:`restore_for_inference` does the same
for the best checkpoint and then falls back to the periodic ones.

Resuming, damaged checkpoints, two managers (moved from WORKSPACE.md)

Resuming is the default: a run started on a directory with checkpoints continues from the
newest (data order and step noise depend only on `(seed, step)`, so it ends with the same
parameters as an uninterrupted run; `tests/experiments/test_experiments_train_resume.py`).
A NaN/Inf loss stops the run with the step and the loss term in the message and never saves
the broken state. A sweep (`python -m experiments.sweep --root ROOT ...`) makes one work
directory per run, `ROOT/<field>=<value>_...`, and `ROOT/sweep.csv`, `ROOT/sweep.md`.
Setting `JAX_COMPILATION_CACHE_DIR` lets resumed and swept runs reuse compiled steps.
A damaged checkpoint (truncated/corrupt file) does not block a resume: `Checkpoints.restore`
logs one line naming it and the reason, falls back to the next older one (and the loop
reports that step); a later save of the same step replaces the damaged copy. For inference a
damaged best checkpoint falls back to the newest readable periodic one. When every
checkpoint is damaged the last line printed is the `CheckpointReadError`: a failed orbax read
leaves work behind in other threads (tensorstore reads completing into a closed loop, an
un-awaited `_get_array_metadatas` coroutine, `async_deserialize` tasks whose DATA_LOSS nobody
retrieves) that Python printed at exit, after the error, in about 1 run in 7 (the flaky CI
failure of 2026-11-26). `quiet_closed_loop_noise` drops exactly those three. A sweep records a
failed run (any exception) with its error in `sweep.csv`/`sweep.md` and goes on.

**Training: two orbax managers, not one.** One manager with `best_fn` keeps the best *k*,
not the last *k*; `checkpoints/` keeps the newest `keep_checkpoints` for resuming and
`checkpoints_best/` keeps one state by lowest `mean_epe_mm` on the validation split.
`restore_for_inference` hides the split (and falls back to the latest when no evaluation
ran).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Iterator
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
ITEM_DIR = "default"  # the one item orbax writes in each step's folder (StandardSave)
WHICH = ("best", "latest")
_REASON_CHARS = 300


def _is_closed_loop_noise(unraisable: Any) -> bool:
    """A failed read's leftovers: "Event loop is closed", or orbax's abandoned read raising."""
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
        return True
    return _from_failed_read(unraisable.exc_traceback)


def _from_failed_read(error_traceback: Any) -> bool:
    frames = traceback.extract_tb(error_traceback) if error_traceback else []
    return any(frame.name == "async_deserialize" for frame in frames)


def _drop_unretrieved_read_errors(record: logging.LogRecord) -> bool:
    """False for asyncio's log of a failed checkpoint read's task that nobody awaited."""
    if "async_deserialize" in record.getMessage():
        return False
    return not (record.exc_info and _from_failed_read(record.exc_info[2]))


def quiet_closed_loop_noise() -> None:
    """Drops the "Event loop is closed" tracebacks a failed orbax read leaves behind.

    When tensorstore fails to read a checkpoint, orbax closes its asyncio loop while
    tensorstore's other reads still complete into it; each prints an "Exception ignored"
    traceback through ``sys.unraisablehook`` (dozens, some at exit, after the real error).
    This wraps the hook once to drop exactly those; everything else goes through. The same
    failed read abandons orbax's ``Store._get_array_metadatas`` coroutine, whose "never
    awaited" RuntimeWarning, and its ``async_deserialize`` tasks whose DATA_LOSS nobody
    retrieves (asyncio logs "Task exception was never retrieved" when they are collected),
    would otherwise print at exit, after the real error; those are dropped too.
    """
    previous = sys.unraisablehook
    if getattr(previous, "_handvae_quiet", False):
        return
    warnings.filterwarnings("ignore", message=r"coroutine '.*_get_array_metadatas' was never "
                            r"awaited", category=RuntimeWarning)
    logging.getLogger("asyncio").addFilter(_drop_unretrieved_read_errors)

    def hook(unraisable: Any) -> None:
        if not _is_closed_loop_noise(unraisable):
            previous(unraisable)

    hook._handvae_quiet = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


class CheckpointReadError(RuntimeError):
    """No checkpoint of the requested kind could be read; the message names each and why."""


def short_reason(error: BaseException) -> str:
    """One line naming ``error``'s type and the start of its message.

    Drops tensorstore's multi-kilobyte ``[tensorstore_spec=...]`` tail, so the cause of a
    damaged checkpoint fits one log line.
    """
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = text.split(" [tensorstore_spec", 1)[0]
    if len(text) > _REASON_CHARS:
        text = text[:_REASON_CHARS] + " …"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _not_the_read_only_notice(record: logging.LogRecord) -> bool:
    """False for orbax's "Given directory is read only=<dir>" warning."""
    return not record.getMessage().startswith("Given directory is read only")


@contextlib.contextmanager
def _without_read_only_notice(read_only: bool) -> Iterator[None]:
    """While read-only managers are made, drops the warning each logs (through absl).

    Every read-only ``CheckpointManager`` warns that its directory is read only, whatever
    its options: read-only is what evaluation, prediction and export ask for, so the notice
    says nothing to their user. Only that message, only during construction; orbax's other
    warnings and this module's own pass.
    """
    if not read_only:
        yield
        return
    absl_logger = logging.getLogger("absl")  # absl.logging's records go through it
    absl_logger.addFilter(_not_the_read_only_notice)
    try:
        yield
    finally:
        absl_logger.removeFilter(_not_the_read_only_notice)


def _barrier_prefix(name: str) -> ocp.options.MultiprocessingOptions:
    """Distinct barrier names per manager.

    On several processes both managers may save the same step at once (the final step is
    evaluated and saved); with orbax's default names their ``_async_write_complete.<step>``
    barriers collide ("Barrier ... is already ongoing") and the job aborts.
    """
    return ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=name)


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
        # Steps a restore found unreadable: skipped as resume points, replaced when saved anew.
        self.unreadable: dict[str, set[int]] = {"latest": set(), "best": set()}
        self.restored_step: int | None = None  # the step the last restore read
        # Read-only managers get no retention options (orbax warns that it ignores them).
        writing = {"create": False, "save_interval_steps": 0} if read_only else {"create": True}
        with _without_read_only_notice(read_only):  # read-only is what we asked for
            self.latest = ocp.CheckpointManager(
                os.path.join(workdir, LATEST_DIR),
                options=ocp.CheckpointManagerOptions(
                    read_only=read_only, enable_async_checkpointing=async_save,
                    multiprocessing_options=_barrier_prefix("latest"),
                    **({} if read_only else {"max_to_keep": keep}), **writing))
            self.best = ocp.CheckpointManager(
                os.path.join(workdir, BEST_DIR),
                options=ocp.CheckpointManagerOptions(
                    best_fn=lambda metrics: metrics[BEST_METRIC], best_mode="min",
                    keep_checkpoints_without_metrics=False, read_only=read_only,
                    enable_async_checkpointing=async_save,
                    multiprocessing_options=_barrier_prefix("best"),
                    **({} if read_only else {"max_to_keep": 1}), **writing))

    def latest_step(self) -> int | None:
        """Step of the newest periodic checkpoint (not one found unreadable), or None."""
        steps = [s for s in self.latest.all_steps() if s not in self.unreadable["latest"]]
        return max(steps) if steps else None

    def best_step(self) -> int | None:
        """Step of the checkpoint with the lowest validation EPE, or None."""
        return self.best.best_step()

    def save(self, step: int, state: TrainState) -> None:
        """Saves ``state`` as periodic checkpoint ``step`` (skips a step already saved)."""
        if step in self.latest.all_steps():
            if step not in self.unreadable["latest"]:
                return
            self.latest.delete(step)  # a damaged copy of this step: replace it
            self.unreadable["latest"].discard(step)
        self.latest.save(step, args=ocp.args.StandardSave(state), force=True)

    def save_best(self, step: int, state: TrainState, metrics: dict[str, float]) -> None:
        """Offers ``state`` to the best-by-EPE manager with its validation ``metrics``."""
        if BEST_METRIC not in metrics:
            raise ValueError(f"save_best needs metrics[{BEST_METRIC!r}], got {sorted(metrics)}")
        if step in self.best.all_steps():
            if step not in self.unreadable["best"]:
                return
            self.best.delete(step)
            self.unreadable["best"].discard(step)
        self.best.save(step, args=ocp.args.StandardSave(state),
                       metrics={k: float(v) for k, v in metrics.items()}, force=True)

    def _candidates(self, which: str) -> list[int]:
        """Steps to try, most wanted first: newest first, or best metric first."""
        manager = self.latest if which == "latest" else self.best
        steps = sorted(manager.all_steps(), reverse=True)
        if which == "best":
            best = manager.best_step()
            steps = ([best] if best is not None else []) + [s for s in steps if s != best]
        return steps

    def restore(self, abstract_state: TrainState, which: str = "latest",
                step: int | None = None) -> TrainState:
        """Reads a checkpoint into the shapes, dtypes and shardings of ``abstract_state``.

        Without ``step``, tries the newest (or the best) checkpoint and, when it cannot be
        read (truncated or corrupt files), logs one line naming it and the reason and falls
        back to the next older one; :attr:`restored_step` is the step it read.

        Args:
          abstract_state: pytree of ``jax.ShapeDtypeStruct`` (with shardings) or arrays.
          which: "latest" (periodic checkpoints) or "best" (lowest validation EPE).
          step: a specific step (no fallback); default the newest (or the best).

        Raises:
          FileNotFoundError: when the work directory holds no such checkpoint.
          CheckpointReadError: when none of them can be read (each named with its reason).
        """
        if which not in WHICH:
            raise ValueError(f"which must be one of {WHICH}, got {which!r}")
        manager = self.latest if which == "latest" else self.best
        candidates = [step] if step is not None else self._candidates(which)
        # Before the first read: a failed read's noise starts in other threads at once.
        quiet_closed_loop_noise()
        if not candidates:
            raise FileNotFoundError(f"no {which} checkpoint in {manager.directory}; train "
                                    f"first with `python -m experiments.train --workdir "
                                    f"{self.workdir}`")
        failures = []
        for index, candidate in enumerate(candidates):
            try:
                # Checked before orbax reads it: a step without its item folder makes orbax's
                # manager take the directory for a multi-item one, and then every older step
                # fails to restore too.
                item = os.path.join(str(manager.directory), str(candidate), ITEM_DIR)
                if not os.path.isdir(item):
                    raise FileNotFoundError(f"{item} is missing (an incomplete or damaged "
                                            "checkpoint)")
                state = manager.restore(candidate,
                                        args=ocp.args.StandardRestore(abstract_state))
            except Exception as error:  # noqa: BLE001 - orbax/tensorstore raise many types
                reason = short_reason(error)
                failures.append(f"step {candidate}: {reason}")
                self.unreadable[which].add(candidate)
                following = (f"falling back to step {candidates[index + 1]}"
                             if index + 1 < len(candidates) else "no older one to try")
                logging.warning("checkpoint %s unreadable (%s); %s",
                                os.path.join(str(manager.directory), str(candidate)), reason,
                                following)
                continue
            self.restored_step = candidate
            if failures:
                logging.warning("restored %s checkpoint step %d of %s (newer ones unreadable)",
                                which, candidate, manager.directory)
            return state
        raise CheckpointReadError(
            f"no readable {which} checkpoint in {manager.directory}: " + "; ".join(failures)
            + ". If every step fails the same way the config may not match the checkpoints "
            "(compare with config.json).")

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

    See :func:`restore_with_origin`, which also says which checkpoint was read.
    """
    config, model, variables, _ = restore_with_origin(workdir, which, step=step)
    return config, model, variables


def restore_with_origin(workdir: str, which: str = "best", *, step: int | None = None
                        ) -> tuple[ml_collections.ConfigDict, Any, dict[str, Any],
                                   dict[str, Any]]:
    """The config, model and variables of a trained run, and the checkpoint really read.

    Args:
      workdir: a work directory written by ``train_and_evaluate``.
      which: "best" (lowest validation mean EPE; falls back to "latest" when the run never
        evaluated) or "latest".
      step: a specific checkpoint step instead of the best/newest.

    Returns:
      ``(config, model, variables, origin)`` where ``variables = {'params', 'batch_stats'}``
      live on the default device, ready for ``handvae.models.vae.predict_pose(model,
      variables, rgb)``, and ``origin = {"which": "best"|"latest", "checkpoint_step": int}``
      names the checkpoint read (after any fall back: an unreadable best one gives the
      newest readable periodic one, an unreadable newest one an older one).
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
        try:
            state = checkpoints.restore(abstract, which=which, step=step)
        except CheckpointReadError:
            if which != "best" or step is not None or checkpoints.latest_step() is None:
                raise
            logging.warning("%s: no readable best checkpoint; using the newest readable "
                            "periodic one", workdir)
            which = "latest"
            state = checkpoints.restore(abstract, which="latest")
        origin = {"which": which, "checkpoint_step": checkpoints.restored_step}
    finally:
        checkpoints.close()
    return config, model, state.variables(), origin
