"""The population trainer: ``train_population(configs, workdirs, popdir)``.

The loop of ``handvae.training.loop.train_and_evaluate`` for K members at once
(``handvae.training.population``): one jitted step per iteration, then per member what a
single run does, in the member's own work directory, with the same files::

    <popdir>/population.json      the members (name, work directory) and the population fields
    <popdir>/checkpoints/<step>/  the stacked [K, ...] train state (resume point)
    <workdir_k>/config.json, metrics.jsonl, tensorboard/, final_metrics.json   as a single run
    <workdir_k>/checkpoints_best/ the member's best-by-validation state (single-run layout)
    <workdir_k>/checkpoints/      the member's final state (single-run layout)

So ``experiments.evaluate``, ``restore_for_inference`` and a resumed single run read a
member's work directory as if it had trained alone. Resume: the newest stacked checkpoint of
``popdir``; each member's config is checked against its ``config.json`` as a single run's is.
One process only.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import tqdm

from handvae.evaluation import evaluator
from handvae.training import checkpoint as checkpoint_lib
from handvae.training import (loop, observability, population, run_config, schedules,
                               sharding, step as step_lib)
from handvae.training.state import TrainState
from handvae.training.writers import MetricWriter

POPULATION_FILE = "population.json"


def _stack(batches: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def _earlier_train_means(workdir: str) -> dict[str, Any]:
    """The ``train_*`` fields of an earlier ``final_metrics.json`` (a finished run resumed)."""
    try:
        with open(os.path.join(workdir, loop.FINAL_METRICS_FILE)) as f:
            earlier = json.load(f)
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in earlier.items() if k.startswith("train_")} if isinstance(
        earlier, dict) else {}


def _check_members(popdir: str, names: list[str], workdirs: list[str]) -> None:
    path = os.path.join(popdir, POPULATION_FILE)
    if not os.path.exists(path):
        return
    with open(path) as f:
        stored = json.load(f)
    if [m["workdir"] for m in stored["members"]] != workdirs:
        raise ValueError(f"{popdir} holds another population ({path}: "
                         f"{[m['name'] for m in stored['members']]}); resume it with the same "
                         f"members, or use a new population directory (got {names})")


def train_population(configs: Sequence[ml_collections.ConfigDict], workdirs: Sequence[str],
                     popdir: str, *, batches: Any = None, eval_batches: Any = None,
                     functions: loop.ModelFunctions | None = None,
                     shared_batch: bool | None = None) -> list[dict[str, Any] | Exception]:
    """Trains K configs that differ only in population fields as one program, and evaluates.

    Args:
      configs: the members' configs (``population.check_population``).
      workdirs: one work directory per member (distinct).
      popdir: the population's directory (stacked checkpoints, ``population.json``).
      batches: None (each member's pipeline), one source (``loop.train_and_evaluate``'s
        ``batches``: a shared batch) or a sequence of K sources (one batch per member).
      eval_batches: as ``loop.train_and_evaluate``'s (``False`` skips evaluation).
      functions: the model and objective (default ``loop.default_model_functions()``).
      shared_batch: with the pipeline, one batch for all members (member 0's stream) or
        one per member; None: shared when every member has the same seed (the streams are
        then the same), else per member.

    The input is the host path (``data.augment_on="auto"`` resolves to it here; ``"device"``,
    :mod:`handvae.data.device_augment`, is for single runs and refused).

    Returns:
      Per member, its final metrics (the schema of ``train_and_evaluate``'s, also written to
      ``<workdir>/final_metrics.json``) or, for a member whose loss became NaN/Inf, a
      ``loop.NonFiniteLossError`` naming the step and term (its update stopped there).
    """
    configs = list(configs)
    population.check_population(configs)
    workdirs = [os.path.abspath(w) for w in workdirs]
    if len(workdirs) != len(configs) or len(set(workdirs)) != len(workdirs):
        raise ValueError(f"need one distinct work directory per member: {len(configs)} "
                         f"configs, work directories {workdirs}")
    if jax.process_count() > 1:
        raise NotImplementedError("a population trains in one process; run a multi-host job "
                                  "as separate runs (experiments.sweep --population=off)")
    fns = functions or loop.default_model_functions()
    popdir = os.path.abspath(popdir)
    names = [os.path.basename(w) for w in workdirs]
    _check_members(popdir, names, workdirs)
    if isinstance(batches, (list, tuple)):
        per_member = True
        if len(batches) != len(configs):
            raise ValueError(f"batches: {len(batches)} sources for {len(configs)} members")
    elif batches is not None:
        per_member = False
    elif shared_batch is None:
        per_member = len({int(c.seed) for c in configs}) > 1
    else:
        per_member = not shared_batch
    base = configs[0]
    num_members, num_steps = len(configs), int(base.num_train_steps)
    mesh = sharding.make_population_mesh(num_members)
    sharding.check_batch_size(base.batch_size, mesh)

    model = fns.build_model(base.model)
    pop_checkpoints = checkpoint_lib.Checkpoints(popdir, keep=base.keep_checkpoints)
    changes: list[dict[str, Any]] = [{} for _ in configs]
    members_sharding = sharding.member_sharded(mesh)
    if pop_checkpoints.latest_step() is not None:
        for k, (config, workdir) in enumerate(zip(configs, workdirs)):
            if os.path.exists(os.path.join(workdir, checkpoint_lib.CONFIG_FILE)):
                changes[k] = run_config.check_resume(checkpoint_lib.read_config(workdir),
                                                     config, workdir)
        abstract = population.abstract_population_state(configs, model,
                                                        init_fn=fns.init_variables)
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                               sharding=members_sharding),
                                abstract)
        state = pop_checkpoints.restore(abstract, "latest")
        tqdm.tqdm.write(f"resuming population {popdir} from step "
                        f"{pop_checkpoints.restored_step}", file=sys.stderr)
    else:
        state = population.place_members(population.create_population_state(
            configs, model, init_fn=fns.init_variables), mesh)
    start_step = int(jax.device_get(state.step)[0])
    for k, (config, workdir) in enumerate(zip(configs, workdirs)):
        checkpoint_lib.write_config(config, workdir)
        run_config.record_changes(workdir, start_step, changes[k])
    os.makedirs(popdir, exist_ok=True)
    with open(os.path.join(popdir, POPULATION_FILE), "w") as f:
        json.dump({"members": [{"name": n, "workdir": w} for n, w in zip(names, workdirs)],
                   "population_fields": list(population.POPULATION_FIELDS),
                   "shared_batch": not per_member,
                   "mesh": dict(mesh.shape)}, f, indent=2)

    hypers = population.place_members(
        jax.tree.map(np.asarray, population.member_hypers(configs)), mesh)
    train_step = population.make_population_train_step(
        base, mesh, shared_batch=not per_member, objective_fn=fns.objective)
    eval_mesh = sharding.make_mesh()
    eval_step = step_lib.make_eval_step(model, eval_mesh, predict_fn=fns.predict_pose)
    writers = [MetricWriter(w) for w in workdirs]
    best = [checkpoint_lib.Checkpoints(w, keep=1) for w in workdirs]
    failures: dict[int, Exception] = {}
    active = np.ones((num_members,), bool)
    finals: list[dict[str, Any]] = [{} for _ in configs]
    last_evals: list[dict[str, Any]] = [{} for _ in configs]
    windows: list[dict[str, list[float]]] = [{} for _ in configs]
    pending: tuple[int, dict[str, jax.Array]] | None = None

    def flush() -> None:
        nonlocal pending
        if pending is None:
            return
        step, metrics = pending
        pending = None
        host = jax.device_get(metrics)
        for k in range(num_members):
            if not active[k]:
                continue
            values = {name: float(v[k]) for name, v in host.items()}
            bad = loop._non_finite_terms(values)
            if bad:
                active[k] = False
                failures[k] = loop.NonFiniteLossError(
                    f"member {names[k]}: non-finite value at step {step} (the update from "
                    f"step {step} to {step + 1}) in "
                    f"{', '.join(f'{n}={values[n]}' for n in bad)}; its training stopped "
                    "(the other members go on). Lower its optimizer.lr.")
                tqdm.tqdm.write(str(failures[k]), file=sys.stderr)
                continue
            for name, value in values.items():
                windows[k].setdefault(name, []).append(value)

    def single_state(k: int) -> TrainState:
        member = population.as_single_run_state(population.member_state(state, k), configs[k])
        return sharding.replicate(member, eval_mesh)

    def evaluate_state(k: int):
        def run(member: TrainState, split: str, num_examples: int) -> evaluator.Evaluation:
            return evaluator.evaluate(
                loop._predict_fn(eval_step, member.variables(), eval_mesh),
                loop._eval_iterable(configs[k], eval_batches, split, num_examples),
                num_devices=eval_mesh.devices.size)
        return run

    def run_eval(at_step: int) -> None:
        if eval_batches is False:
            return
        for k in range(num_members):
            if not active[k]:
                continue
            config = configs[k]
            result = evaluate_state(k)(single_state(k), config.data.validation_split,
                                       config.num_eval_examples)
            last_evals[k] = result.scalars()
            writers[k].write(at_step, "validation", last_evals[k], info=evaluator.provenance(
                dataset=config.data.dataset, split=config.data.validation_split,
                num_examples=result.summary["num_examples"], which="latest",
                checkpoint_step=at_step))
            best[k].save_best(at_step, single_state(k), last_evals[k])

    iterators: list[Iterator[Any]] = []
    try:
        if per_member:
            sources = batches if batches is not None else [None] * num_members
            # The population's step takes contract batches: always the host path.
            iterators = [loop._train_iterator(c, s, start_step, raw=False)
                         for c, s in zip(configs, sources)]
        else:
            iterators = [loop._train_iterator(base, batches, start_step, raw=False)]
        window_start, data_wait = time.perf_counter(), 0.0
        with tqdm.tqdm(total=num_steps, initial=start_step, unit="step", dynamic_ncols=True,
                       desc=f"{os.path.basename(popdir)} ×{num_members}") as bar:
            for step in range(start_step, num_steps):
                if not active.any():
                    break
                wait_start = time.perf_counter()
                try:
                    host_batch = [next(it) for it in iterators]
                except StopIteration:
                    raise ValueError(f"the training batches ran out at step {step} of "
                                     f"{num_steps}; pass an infinite stream") from None
                batch = _stack(host_batch) if per_member else host_batch[0]
                data_wait += time.perf_counter() - wait_start
                state, metrics = train_step(
                    state, population.place_batch(batch, mesh, shared_batch=not per_member),
                    hypers, population.place_members(active.copy(), mesh))
                flush()
                pending = (step, metrics)
                done = step + 1
                log_now, eval_now, save_now = schedules.events_after(done, num_steps, base)
                if log_now or eval_now or save_now:
                    flush()
                if log_now:
                    elapsed = time.perf_counter() - window_start
                    window = loop._window_length(base.log_every, done, start_step)
                    # Every member advances one step per population step: the timings
                    # are the population's (member-steps/s = K × steps_per_sec).
                    timing = {**observability.timing_metrics(elapsed, data_wait, window),
                              **observability.device_memory_metrics()}
                    for k in np.flatnonzero(active):
                        means = {n: float(np.mean(v)) for n, v in windows[k].items()}
                        means.update(timing)
                        writers[k].write(done, "train", means)
                        finals[k].update({f"train_{n}": v for n, v in means.items()})
                    windows = [{} for _ in configs]
                    data_wait = 0.0
                    window_start = time.perf_counter()
                if eval_now or save_now:
                    pause_start = time.perf_counter()
                    if eval_now:
                        run_eval(done)
                    if save_now:
                        pop_checkpoints.save(done, state)
                    window_start += time.perf_counter() - pause_start
                bar.update(1)
            flush()
        if start_step >= num_steps:   # resumed a finished population
            for k in range(num_members):
                finals[k].update(_earlier_train_means(workdirs[k]))
            run_eval(num_steps)
        pop_checkpoints.wait()
        for k in np.flatnonzero(active):
            member = single_state(k)
            best[k].save(num_steps, member)
            best[k].wait()
            if eval_batches is not False:
                finals[k]["test"] = loop._final_test(configs[k], member, best[k], eval_mesh,
                                                     evaluate_state(k), writers[k], num_steps)
    finally:
        for it in iterators:
            if hasattr(it, "close"):  # stops the pipeline's prefetch thread
                it.close()
        pop_checkpoints.wait()
        pop_checkpoints.close()
        for manager in best:
            manager.wait()
            manager.close()
        for writer in writers:
            writer.close()

    results: list[dict[str, Any] | Exception] = []
    for k, (config, workdir) in enumerate(zip(configs, workdirs)):
        if k in failures:
            results.append(failures[k])
            continue
        final = {**finals[k], **last_evals[k]}
        if last_evals[k]:
            final["validation"] = evaluator.provenance(
                dataset=config.data.dataset, split=config.data.validation_split,
                num_examples=int(last_evals[k]["num_examples"]), which="latest",
                checkpoint_step=num_steps)
        final["step"] = float(num_steps)
        with open(os.path.join(workdir, loop.FINAL_METRICS_FILE), "w") as f:
            json.dump(final, f, indent=2, sort_keys=True)
        results.append(final)
    return results
