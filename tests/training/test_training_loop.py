"""train_and_evaluate end to end on a stand-in model: files, logs, resume, best, NaN guard."""

import gc
import json
import os

import jax
import numpy as np
import pytest

import training_standins as standins
from handvae.training import checkpoint as checkpoint_lib
from handvae.training import loop, sharding, writers


def _run(config, workdir, batches=None):
    return loop.train_and_evaluate(
        config, str(workdir), batches=batches or standins.batches(config),
        eval_batches=standins.eval_batches(config), functions=standins.FUNCTIONS)


def _params(workdir, which="latest"):
    config = checkpoint_lib.read_config(str(workdir))
    model = standins.build_model(config.model)
    checkpoints = checkpoint_lib.Checkpoints(str(workdir), read_only=True, async_save=False)
    from handvae.training.state import create_train_state
    template = create_train_state(config, model, init_fn=standins.init_variables)
    abstract = checkpoint_lib.sharded_abstract(template, sharding.make_mesh())
    try:
        return jax.device_get(checkpoints.restore(abstract, which)), checkpoints.best_step()
    finally:
        checkpoints.close()


def test_workdir_layout_logs_and_final_metrics(tmp_path):
    config = standins.tiny_config()
    final = _run(config, tmp_path)
    names = set(os.listdir(tmp_path))
    assert {"config.json", "checkpoints", "checkpoints_best", "metrics.jsonl", "tensorboard",
            "final_metrics.json"} <= names
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tensorboard"))
    # keep_checkpoints=2 of the saves at 2, 4, 6.
    assert sorted(int(s) for s in os.listdir(tmp_path / "checkpoints")) == [4, 6]
    train = writers.read_metrics(str(tmp_path), "train")
    evals = writers.read_metrics(str(tmp_path), "validation")
    assert [r["step"] for r in train] == [2, 4, 6]
    assert [r["step"] for r in evals] == [3, 6]
    assert {"loss", "pose", "kl", "beta", "learning_rate", "grad_norm", "steps_per_sec",
            "data_wait_fraction"} <= set(
        train[0])
    assert evals[-1]["num_examples"] == 6  # the smaller last eval batch was padded and cut
    assert evals[-1]["info"]["split"] == config.data.validation_split
    assert final["mean_epe_mm"] == pytest.approx(evals[-1]["mean_epe_mm"])
    assert final["validation"]["split"] == config.data.validation_split
    assert json.load(open(tmp_path / "final_metrics.json"))["step"] == 6
    assert checkpoint_lib.read_config(str(tmp_path)).model.strategy == config.model.strategy
    # The best checkpoint is the evaluation with the lowest mean EPE.
    best_eval = min(evals, key=lambda r: r["mean_epe_mm"])
    _, best_step = _params(tmp_path, "best")
    assert best_step == best_eval["step"]
    # The test split is evaluated once, at the end, on that best-by-validation checkpoint.
    tests = writers.read_metrics(str(tmp_path), "test")
    assert len(tests) == 1 and tests[0]["step"] == best_step
    saved = json.load(open(tmp_path / "final_metrics.json"))["test"]
    assert saved["split"] == "test" and saved["checkpoint"] == "best-by-validation"
    assert saved["checkpoint_step"] == best_step and saved["selection_split"] == "validation"
    # Each split has frames of its own: the test number is the best checkpoint on the test
    # frames, not the validation number it was selected by.
    assert saved["mean_epe_mm"] != pytest.approx(best_eval["mean_epe_mm"], rel=1e-3)
    assert "mean_epe_all_mm" in saved and "constant_pose_baseline" in saved


def test_resume_matches_uninterrupted_run(tmp_path):
    config = standins.tiny_config()
    _run(config, tmp_path / "straight")
    short = standins.tiny_config()
    short.num_train_steps = 4
    _run(short, tmp_path / "resumed")
    _run(config, tmp_path / "resumed")  # picks up the step-4 checkpoint
    straight, _ = _params(tmp_path / "straight")
    resumed, _ = _params(tmp_path / "resumed")
    assert int(resumed.step) == 6
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                 straight.params, resumed.params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                 straight.opt_state, resumed.opt_state)


def test_non_finite_loss_stops_naming_step_and_term(tmp_path):
    config = standins.tiny_config()
    clean = standins.batches(config)

    def poisoned(start_step):
        for step, batch in enumerate(clean(start_step), start_step):
            if step == 3:
                batch["pose"] = batch["pose"].copy()
                batch["pose"][0, 0, 0] = np.inf
            yield batch

    with pytest.raises(loop.NonFiniteLossError, match=r"step 3 .*pose=") as info:
        _run(config, tmp_path, batches=poisoned)
    assert "kl=" not in str(info.value)  # only the offending terms are named
    assert "Last good checkpoint: step 2" in str(info.value)
    assert sorted(int(s) for s in os.listdir(tmp_path / "checkpoints")) == [2]
    kept, _ = _params(tmp_path)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(kept.params))


def test_batch_not_divisible_by_devices_fails_before_training(tmp_path):
    config = standins.tiny_config()
    config.batch_size = 3
    with pytest.raises(ValueError, match="not divisible by the 2 devices"):
        _run(config, tmp_path)


@pytest.mark.parametrize("split", ["test", "held_out"])
def test_selecting_on_the_test_split_is_refused_before_anything_is_written(tmp_path, split):
    config = standins.tiny_config()
    config.data.eval_split = "held_out" if split == "held_out" else "test"
    config.data.validation_split = split
    with pytest.raises(ValueError, match="config.data.validation_split"):
        _run(config, tmp_path)
    assert not os.path.exists(tmp_path / "config.json")


@pytest.mark.parametrize("steps", [0, -3])
def test_non_positive_num_train_steps_is_an_error(tmp_path, steps):
    config = standins.tiny_config()
    config.num_train_steps = steps
    with pytest.raises(ValueError, match="config.num_train_steps"):
        _run(config, tmp_path)
    assert not os.listdir(tmp_path)


def test_resume_refuses_shape_changes_and_records_accepted_ones(tmp_path):
    short = standins.tiny_config()
    short.num_train_steps = 2
    _run(short, tmp_path)
    stored = open(tmp_path / "config.json").read()
    wider = standins.tiny_config()
    wider.model.resnet_width = 8  # other parameter shapes
    with pytest.raises(ValueError, match=r"model.resnet_width: 4 → 8") as info:
        _run(wider, tmp_path)
    assert "strict" not in str(info.value)
    assert open(tmp_path / "config.json").read() == stored  # the record of the run is kept
    assert not os.path.exists(tmp_path / "config_changes.jsonl")
    longer = standins.tiny_config()  # 6 steps instead of 2, a new learning rate
    longer.optimizer.lr = 5e-3
    assert _run(longer, tmp_path)["step"] == 6
    changes = [json.loads(line) for line in open(tmp_path / "config_changes.jsonl")]
    assert len(changes) == 1 and changes[0]["resumed_at_step"] == 2
    assert changes[0]["changes"] == {"num_train_steps": [2, 6], "optimizer.lr": [1e-2, 5e-3]}
    assert checkpoint_lib.read_config(str(tmp_path)).num_train_steps == 6


def test_selection_reads_validation_frames_and_the_test_reads_test_frames(tmp_path):
    """At the level of the data: every evaluation during training scores the validation
    split's frames, and the one final evaluation the test split's, on the chosen checkpoint."""
    from handvae.evaluation import evaluator
    from handvae.training import step as step_lib

    config = standins.tiny_config()
    asked = []
    make = standins.eval_batches(config)

    def recording(split):
        asked.append(split)
        return make(split)

    loop.train_and_evaluate(config, str(tmp_path), batches=standins.batches(config),
                            eval_batches=recording, functions=standins.FUNCTIONS)
    assert asked == ["validation", "validation", "test"]
    state, best_step = _params(tmp_path, "best")
    model = standins.build_model(config.model)
    eval_step = step_lib.make_eval_step(model, sharding.make_mesh(),
                                        predict_fn=standins.predict_pose)

    def predict(rgb):
        return np.asarray(eval_step(state.variables(), rgb))

    def score(split):
        return evaluator.evaluate(predict, make(split),
                                  num_devices=jax.device_count()).summary["mean_epe_mm"]

    evals = {r["step"]: r for r in writers.read_metrics(str(tmp_path), "validation")}
    assert evals[best_step]["mean_epe_mm"] == pytest.approx(score("validation"), rel=1e-5)
    test = writers.read_metrics(str(tmp_path), "test")[0]
    assert test["mean_epe_mm"] == pytest.approx(score("test"), rel=1e-5)
    assert score("test") != pytest.approx(score("validation"), rel=1e-3)


# --- Safety (issue 24): one trainer per workdir, config written once it works ---------------

_HOLD_LOCK = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("workdir_lock", sys.argv[1])
lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lock)
with lock.hold(sys.argv[2]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_trainer_refuses_naming_the_holder_and_a_dead_ones_lock_blocks_no_one(
        tmp_path):
    import signal
    import subprocess
    import sys

    from handvae.training import workdir_lock
    workdir = tmp_path / "run"
    workdir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, workdir_lock.__file__,
                               str(workdir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(workdir_lock.WorkdirLockedError,
                           match=rf"in use by another trainer \(pid {holder.pid} on host "
                                 r".+, started 20.+\)"):
            _run(standins.tiny_config(), workdir)
        assert sorted(os.listdir(workdir)) == [workdir_lock.LOCK_FILE]  # nothing written
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding it: its lock file stays behind
        holder.wait()
        holder.stdout.close()
    assert str(holder.pid) in (workdir / workdir_lock.LOCK_FILE).read_text()
    assert _run(standins.tiny_config(), workdir)["step"] == 6  # the stale lock blocks no one
    assert not (workdir / workdir_lock.LOCK_FILE).exists()  # released at the end


def test_a_wrong_data_dir_keeps_the_config_and_leaves_no_new_workdir(tmp_path):
    config = standins.tiny_config()
    config.num_train_steps = 2
    _run(config, tmp_path / "run")
    stored = (tmp_path / "run" / "config.json").read_text()
    wrong = config.copy_and_resolve_references()
    wrong.num_train_steps = 4
    wrong.data.data_dir = str(tmp_path / "no_such_data")
    for workdir in (tmp_path / "run", tmp_path / "fresh"):
        with pytest.raises(FileNotFoundError, match="no built rhd/synthetic under data_dir"):
            loop.train_and_evaluate(wrong, str(workdir), eval_batches=False,
                                    functions=standins.FUNCTIONS)
    assert (tmp_path / "run" / "config.json").read_text() == stored
    assert not (tmp_path / "fresh").exists()


def test_a_resume_with_nothing_left_to_train_keeps_the_training_means(tmp_path):
    config = standins.tiny_config()
    first = _run(config, tmp_path)
    again = _run(config, tmp_path)
    trained = {k: v for k, v in first.items() if k.startswith("train_")}
    assert trained and {k: again[k] for k in trained} == trained
    written = json.load(open(tmp_path / "final_metrics.json"))
    assert {k: written[k] for k in trained} == trained


@pytest.mark.parametrize("field,value", [("model.latent_dim", 0), ("model.resnet_width", -2),
                                         ("data.image_size", 0), ("data.num_points", 0)])
def test_a_non_positive_size_is_named_and_nothing_is_left(tmp_path, field, value):
    config = standins.tiny_config()
    group, name = field.split(".")
    config[group][name] = value
    with pytest.raises(ValueError, match=rf"config\.{field} must be a positive integer"):
        _run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# The refused restore leaves orbax's read coroutines unawaited; they are collected here (not in
# a later test, which would report them as its own warnings).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_lost_config_with_a_shape_change_and_a_file_workdir_are_one_line_errors(tmp_path):
    config = standins.tiny_config()
    config.num_train_steps = 2
    _run(config, tmp_path / "run")
    os.remove(tmp_path / "run" / "config.json")
    wider = config.copy_and_resolve_references()
    wider.model.resnet_width = 8  # the stand-in's conv width: other parameter shapes
    with pytest.raises(ValueError, match="holds checkpoints but no config.json"):
        _run(wider, tmp_path / "run")
    gc.collect()
    assert not (tmp_path / "run" / "config.json").exists()
    (tmp_path / "file").write_text("not a folder")
    for workdir in (tmp_path / "file", tmp_path / "file" / "below"):
        with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
            _run(config, workdir)
    assert (tmp_path / "file").read_text() == "not a folder"
