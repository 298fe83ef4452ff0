"""The training loop: ``train_and_evaluate(config, workdir)``.

Resumes from the newest checkpoint of ``workdir`` by default. While it runs it shows a
progress bar (steps/s, ETA), writes the mean of every metric over each ``config.log_every``
steps (plus ``steps_per_sec`` and ``data_wait_fraction``, the share of time spent waiting for
input) to TensorBoard event files (``tensorboardX``) and to ``metrics.jsonl``, evaluates every
``config.eval_every`` steps on ``config.data.validation_split`` with
``handvae.evaluation.evaluator`` (mean EPE etc.), keeps the best checkpoint by that validation
EPE and the last ``config.keep_checkpoints`` periodic ones, evaluates the test split
(``config.data.eval_split``) once at the end on the best-by-validation checkpoint, and stops
with :class:`NonFiniteLossError` naming the step and the loss term when the loss becomes
NaN/Inf, without saving the broken state.

Decisions (moved from WORKSPACE.md)

**Training: the NaN guard checks each step one step late.** The host reads step k's
metrics after dispatching step k+1, so it never stalls the device; before logging,
evaluating or saving it checks synchronously, so a non-finite state is never saved.

**Training: `data_wait_fraction` is logged** (time blocked on the next batch ÷ time): the
R2P demo on 2 cores waited ~70 % of the time (input-bound), S4 ~0 %. See the input
pipeline decisions (`handvae/data/prepared.py`) for the figures after per-strategy keys and
the example cache.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np
import tqdm

from handvae.data import device_augment, pipeline, streams
from handvae.evaluation import evaluator
from handvae.losses import objectives
from handvae.models import registry, vae
from handvae.training import checkpoint as checkpoint_lib
from handvae.training import observability, run_config, schedules, sharding, step as step_lib
from handvae.training import workdir_lock
from handvae.training.state import TrainState, abstract_train_state, create_train_state
from handvae.training.writers import MetricWriter

FINAL_METRICS_FILE = "final_metrics.json"
Batch = dict[str, np.ndarray]
BatchSource = Callable[[int], Iterator[Batch]] | Iterable[Batch]


class NonFiniteLossError(FloatingPointError):
    """The loss or one of its terms became NaN/Inf; the message names the step and term."""


class ModelFunctions(NamedTuple):
    """The model and objective the loop trains (defaults: ``handvae.models``/``losses``).

    ``objective(spec, outputs, batch, weights, *, emd, kl_reduction, unlabelled_weighting) ->
    (loss, terms)`` scores the outputs of ``model.apply``; the train step applies the model
    (``handvae.training.step``).
    """

    build_model: Callable[[ml_collections.ConfigDict], Any]
    init_variables: Callable[..., dict[str, Any]]
    objective: Callable[..., Any]
    predict_pose: Callable[..., Any]


def default_model_functions() -> ModelFunctions:
    """The real model (``handvae.models.vae``) and objective (``handvae.losses``)."""
    return ModelFunctions(vae.build_model, vae.init_variables, objectives.negative_elbo,
                          vae.predict_pose)


def _augment_on_device(config: ml_collections.ConfigDict, batches: BatchSource | None) -> bool:
    """Whether the input pipeline ships raw rows and the step augments them (``data.augment_on``,
    ``handvae.data.device_augment``); batches given by the caller are contract batches."""
    return batches is None and device_augment.resolve_augment_on(config.data) == "device"


def _train_iterator(config: ml_collections.ConfigDict, batches: BatchSource | None,
                    start_step: int, *, raw: bool) -> Iterator[Batch]:
    """The training batches from ``start_step``: the caller's, or the input pipeline's (raw
    uint8 rows when ``raw``, for a step that augments on the device; else contract batches)."""
    if batches is None:
        rows = streams.rows_per_step(config.data, config.batch_size)  # 2B: weak, "added"
        return iter(pipeline.train_batches(
            config.data, rows // jax.process_count(), seed=config.seed,
            start_step=start_step, process_index=jax.process_index(),
            process_count=jax.process_count(),
            keys=registry.get_strategy(config.model.strategy).batch_keys(),
            raw=raw))
    if callable(batches):
        return iter(batches(start_step))
    return iter(batches)


def _eval_iterable(config: ml_collections.ConfigDict, eval_batches: Any, split: str,
                   num_examples: int) -> Iterable[Batch]:
    if eval_batches is None:
        return pipeline.eval_batches(
            config.data, config.batch_size, split=split, num_examples=num_examples,
            keys=registry.get_strategy(config.model.strategy).batch_keys(evaluation=True))
    return eval_batches(split) if callable(eval_batches) else eval_batches


def _predict_fn(eval_step: Callable[..., jax.Array], variables: dict[str, Any],
                mesh: jax.sharding.Mesh) -> Callable[[np.ndarray], np.ndarray]:
    """``rgb [B, ...] -> pose [B, 21, 3]`` on ``mesh`` (B a multiple of its device count)."""
    data = sharding.batch_sharded(mesh)
    return lambda rgb: np.asarray(jax.device_get(
        eval_step(variables, jax.device_put(rgb, data))))


def _non_finite_terms(metrics: dict[str, Any]) -> list[str]:
    return sorted(k for k, v in metrics.items() if not np.all(np.isfinite(v)))


class _Guard:
    """Checks each step's metrics one step late, so the host never stalls the device."""

    def __init__(self, checkpoints: checkpoint_lib.Checkpoints):
        self._checkpoints = checkpoints
        self._pending: tuple[int, dict[str, jax.Array]] | None = None
        self.window: dict[str, list[float]] = {}

    def push(self, step: int, metrics: dict[str, jax.Array]) -> None:
        self.flush()
        self._pending = (step, metrics)

    def flush(self) -> None:
        if self._pending is None:
            return
        step, metrics = self._pending
        self._pending = None
        host = {k: float(v) for k, v in jax.device_get(metrics).items()}
        bad = _non_finite_terms(host)
        if bad:
            self._checkpoints.wait()
            last = self._checkpoints.latest_step()
            raise NonFiniteLossError(
                f"non-finite value at step {step} (the update from step {step} to "
                f"{step + 1}) in {', '.join(f'{k}={host[k]}' for k in bad)}; training "
                f"stopped. Last good checkpoint: "
                + (f"step {last} in {self._checkpoints.latest.directory}" if last is not None
                   else "none") + ". Lower config.optimizer.lr or inspect that batch.")
        for k, v in host.items():
            self.window.setdefault(k, []).append(v)

    def take_means(self) -> dict[str, float]:
        means = {k: float(np.mean(v)) for k, v in self.window.items()}
        self.window = {}
        return means


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       batches: BatchSource | None = None,
                       eval_batches: Any = None,
                       functions: ModelFunctions | None = None) -> dict[str, Any]:
    """Trains ``config`` in ``workdir`` (resuming from its newest checkpoint) and evaluates.

    Every ``config.eval_every`` steps the model is evaluated on
    ``config.data.validation_split`` (the first ``config.num_eval_examples``) and the best
    checkpoint is chosen by that mean EPE. At the end the test split
    (``config.data.eval_split``) is evaluated once, in full, on the best-by-validation
    checkpoint (the final state when no validation ran), by the same
    ``handvae.evaluation.evaluator``.

    ``config.json`` is written only after the config is validated, the model built, the
    state created or restored and the training data opened; on resume, changes of shapes or
    strategy are refused and the accepted ones recorded (``handvae.training.run_config``).
    The work directory is locked for the run (``handvae.training.workdir_lock``): a second
    trainer on it refuses at once. A new work directory that fails before its config is
    written is removed again.

    Args:
      config: an experiment config (``experiments/configs``).
      workdir: work directory (layout in WORKSPACE.md, "Work directories").
      batches: replaces the input pipeline: a callable ``start_step -> iterator`` whose k-th
        item is batch ``start_step + k`` (resumable), or an iterable used as is. Each batch
        is this process's slice, dict of host arrays [B_local, ...] (``handvae.data.spec``).
      eval_batches: replaces the evaluation data: a callable ``split -> iterable`` or an
        iterable used for every split; default ``pipeline.eval_batches``. ``False`` skips
        evaluation (no best checkpoint, no test result then).
      functions: the model and objective (default :func:`default_model_functions`).

    Returns:
      Final metrics: the last validation scalars (``mean_epe_mm``, ``auc_20_50``, ...; the
      numbers to compare runs by), ``step``, the last logged training means prefixed
      ``train_``, ``validation`` (provenance of those numbers) and ``test`` (the test
      split's summary on the best-by-validation checkpoint with its provenance). Also
      written to ``<workdir>/final_metrics.json``.

    Raises:
      NonFiniteLossError: the loss became NaN/Inf (checkpoints before it are kept).
      ValueError: a bad config (names the field: ``num_train_steps`` ≤ 0, a selection split
        that is the test split, a batch size not divisible by the device count, a resume
        that changes shapes or strategy, a resume whose config.json is lost and whose
        checkpoints do not fit). Nothing is written then.
      NotADirectoryError: ``workdir`` is a file or lies below one.
      WorkdirLockedError: another trainer holds ``workdir`` (named: pid, host, start time).
      CheckpointReadError: no checkpoint of ``workdir`` can be read.
      FileNotFoundError: the data set is not built under ``config.data.data_dir``.
    """
    run_config.validate(config)
    workdir = os.path.abspath(workdir)
    run_config.check_workdir(workdir)
    is_main = jax.process_index() == 0
    created = not os.path.exists(workdir)
    if is_main:
        os.makedirs(workdir, exist_ok=True)
    try:
        with workdir_lock.hold(workdir, enabled=is_main):
            return _train_and_evaluate(config, workdir, batches, eval_batches,
                                       functions or default_model_functions())
    except BaseException:
        # A new work directory that failed before its config.json was written holds only
        # this call's empty scaffolding: leave nothing behind.
        if (is_main and created
                and not os.path.exists(os.path.join(workdir, checkpoint_lib.CONFIG_FILE))):
            shutil.rmtree(workdir, ignore_errors=True)
        raise


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                        batches: BatchSource | None, eval_batches: Any,
                        fns: ModelFunctions) -> dict[str, Any]:
    """:func:`train_and_evaluate` once ``workdir`` exists and this process holds its lock."""
    mesh = sharding.make_mesh()
    sharding.check_batch_size(config.batch_size, mesh)
    is_main = jax.process_index() == 0
    profiler = observability.StepProfiler(config.get("profile_steps", ""), workdir,
                                          enabled=is_main)

    model = fns.build_model(config.model)
    checkpoints = checkpoint_lib.Checkpoints(workdir, keep=config.keep_checkpoints)
    changes: dict[str, Any] = {}
    if checkpoints.latest_step() is not None:
        has_config = os.path.exists(os.path.join(workdir, checkpoint_lib.CONFIG_FILE))
        if has_config:
            changes = run_config.check_resume(checkpoint_lib.read_config(workdir), config,
                                              workdir)
        # Shapes only (no initialisation compiled or run) as the restore target.
        abstract = abstract_train_state(config, model, init_fn=fns.init_variables)
        try:
            state = checkpoints.restore(checkpoint_lib.sharded_abstract(abstract, mesh),
                                        "latest")
        except checkpoint_lib.CheckpointReadError as error:
            if has_config:
                raise
            raise ValueError(run_config.lost_config_message(workdir)) from error
        if is_main:
            tqdm.tqdm.write(f"resuming {workdir} from step {checkpoints.latest_step()}",
                            file=sys.stderr)
    else:
        state = sharding.replicate(
            create_train_state(config, model, init_fn=fns.init_variables), mesh)
    start_step = int(jax.device_get(state.step))
    num_steps = int(config.num_train_steps)
    # The data opens before config.json is written: a wrong data_dir keeps the run's record.
    on_device = _augment_on_device(config, batches)
    train_iter: Iterator[Batch] | None = _train_iterator(config, batches, start_step,
                                                         raw=on_device)
    if is_main:  # only now is the config known to be good
        try:
            run_config.record_changes(workdir, start_step, changes)
            checkpoint_lib.write_config(config, workdir)
        except BaseException:
            _close(train_iter)
            raise
        tqdm.tqdm.write(observability.parameter_overview(state.params), file=sys.stderr)

    prepare_batch = (device_augment.make_batch_fn(
        config.data, seed=config.seed,
        keys=registry.get_strategy(config.model.strategy).batch_keys())
        if on_device else None)
    train_step = step_lib.make_train_step(config, mesh, objective_fn=fns.objective,
                                          prepare_batch=prepare_batch)
    eval_mesh = mesh if jax.process_count() == 1 else sharding.make_mesh(jax.local_devices())
    eval_step = step_lib.make_eval_step(model, eval_mesh, predict_fn=fns.predict_pose)
    writer = MetricWriter(workdir, enabled=is_main)
    guard = _Guard(checkpoints)
    # A resume with no step left to train keeps the run's last training means.
    final: dict[str, Any] = _train_means(workdir) if start_step >= num_steps else {}
    last_eval: dict[str, Any] = {}
    selection = config.data.validation_split

    def evaluate_state(state: TrainState, split: str, num_examples: int
                       ) -> evaluator.Evaluation:
        variables = state.variables()
        if jax.process_count() > 1:  # evaluate on local devices from a local copy
            variables = sharding.replicate(
                jax.tree.map(lambda x: x.addressable_data(0), variables), eval_mesh)
        return evaluator.evaluate(
            _predict_fn(eval_step, variables, eval_mesh),
            _eval_iterable(config, eval_batches, split, num_examples),
            num_devices=eval_mesh.devices.size)

    def run_eval(state: TrainState, at_step: int) -> None:
        nonlocal last_eval
        if eval_batches is False:
            return
        result = evaluate_state(state, selection, config.num_eval_examples)
        last_eval = result.scalars()
        writer.write(at_step, "validation", last_eval, info=evaluator.provenance(
            dataset=config.data.dataset, split=selection,
            num_examples=result.summary["num_examples"], which="latest",
            checkpoint_step=at_step))
        checkpoints.save_best(at_step, state, last_eval)

    try:
        window_start, data_wait = time.perf_counter(), 0.0
        with tqdm.tqdm(total=num_steps, initial=start_step, unit="step", dynamic_ncols=True,
                       disable=not is_main, desc=os.path.basename(workdir)) as bar:
            for step in range(start_step, num_steps):
                profiler.before(step)
                wait_start = time.perf_counter()
                try:
                    batch = next(train_iter)
                except StopIteration:
                    raise ValueError(f"the training batches ran out at step {step} of "
                                     f"{num_steps}; pass an infinite stream") from None
                data_wait += time.perf_counter() - wait_start
                state, metrics = train_step(state, sharding.shard_batch(batch, mesh))
                guard.push(step, metrics)
                profiler.after(step, metrics)
                done = step + 1
                log_now, eval_now, save_now = schedules.events_after(done, num_steps, config)
                if log_now or eval_now or save_now:
                    guard.flush()  # never log, evaluate or save a state with NaNs
                if log_now:
                    means = guard.take_means()
                    elapsed = time.perf_counter() - window_start
                    window = _window_length(config.log_every, done, start_step)
                    # Waits overlap the previous step on the device, so a data_wait_fraction
                    # of ~0 means the input never starves it (observability.timing_metrics).
                    means.update(observability.timing_metrics(elapsed, data_wait, window))
                    means.update(observability.device_memory_metrics())
                    data_wait = 0.0
                    writer.write(done, "train", means)
                    final.update({f"train_{k}": v for k, v in means.items()})
                    bar.set_postfix(loss=f"{means['loss']:.4g}", refresh=False)
                    window_start = time.perf_counter()
                if eval_now or save_now:
                    pause_start = time.perf_counter()
                    if eval_now:
                        run_eval(state, done)
                    if save_now:
                        checkpoints.save(done, state)
                    # Evaluation and saving do not count against steps/s or data waits.
                    window_start += time.perf_counter() - pause_start
                bar.update(1)
            guard.flush()
        if start_step >= num_steps and not last_eval:  # resumed a finished run
            run_eval(state, num_steps)
        checkpoints.wait()
        if eval_batches is not False:
            final["test"] = _final_test(config, state, checkpoints, mesh, evaluate_state,
                                        writer, num_steps)
    finally:
        profiler.close()
        _close(train_iter)
        checkpoints.wait()
        checkpoints.close()
        writer.close()

    final.update(last_eval)
    if last_eval:
        final["validation"] = evaluator.provenance(
            dataset=config.data.dataset, split=selection,
            num_examples=int(last_eval["num_examples"]), which="latest",
            checkpoint_step=num_steps)
    final["step"] = float(num_steps)
    if is_main:
        with open(os.path.join(workdir, FINAL_METRICS_FILE), "w") as f:
            json.dump(final, f, indent=2, sort_keys=True)
    return final


def _close(train_iter: Any) -> None:
    if hasattr(train_iter, "close"):  # stops the pipeline's prefetch thread
        train_iter.close()


def _train_means(workdir: str) -> dict[str, Any]:
    """The ``train_*`` fields of ``workdir``'s earlier ``final_metrics.json`` (or none)."""
    try:
        with open(os.path.join(workdir, FINAL_METRICS_FILE)) as f:
            earlier = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(earlier, dict):
        return {}
    return {k: v for k, v in earlier.items() if k.startswith("train_")}


def _final_test(config: ml_collections.ConfigDict, state: TrainState,
                checkpoints: checkpoint_lib.Checkpoints, mesh: jax.sharding.Mesh,
                evaluate_state: Callable[..., evaluator.Evaluation], writer: MetricWriter,
                num_steps: int) -> dict[str, Any]:
    """The test split, in full, once, on the best-by-validation checkpoint (or the final
    state when none was chosen): its summary plus provenance (``handvae.evaluation``)."""
    best_step = checkpoints.best_step()
    which, at = "latest", num_steps
    if best_step is not None and best_step != num_steps:
        state = checkpoints.restore(checkpoint_lib.sharded_abstract(state, mesh), "best")
        which, at = "best", checkpoints.restored_step  # after any fall back
    elif best_step is not None:
        which = "best"
    split = config.data.eval_split
    result = evaluate_state(state, split, -1)
    origin = evaluator.provenance(
        dataset=config.data.dataset, split=split, num_examples=result.summary["num_examples"],
        which=which, checkpoint_step=at, selection_split=config.data.validation_split)
    writer.write(at, "test", result.scalars(), info=origin)
    return {**result.summary, **origin}


def _window_length(log_every: int, done: int, start_step: int) -> int:
    """Number of steps in the logging window that ends at ``done``."""
    window = done - start_step if log_every <= 0 else (done - 1) % log_every + 1
    return max(1, min(window, done - start_step))
