"""A damaged newest (or best) checkpoint does not block a resume or an evaluation.

Real orbax checkpoints of a tiny train state are written, one is damaged by truncating a
file (as a full disk or a copy cut short would), and the restore falls back to the next.
"""

import json
import logging
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np

import training_standins as standins
from handvae.training import checkpoint as checkpoint_lib
from handvae.training import sharding, state as state_lib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _write_checkpoints(workdir, steps=(1, 2, 3), best=None):
    config = standins.tiny_config()
    model = standins.build_model(config.model)
    mesh = sharding.make_mesh(jax.devices()[:1])
    state = sharding.replicate(
        state_lib.create_train_state(config, model, init_fn=standins.init_variables), mesh)
    checkpoints = checkpoint_lib.Checkpoints(str(workdir), keep=5, async_save=False)
    for step in steps:
        # A distinct value per step, so the test can tell which one was read.
        checkpoints.save(step, state.replace(step=step, params=jax.tree.map(
            lambda x, step=step: x * 0 + step, state.params)))
    if best is not None:
        checkpoints.save_best(best, state.replace(step=best), {"mean_epe_mm": 1.0})
    checkpoints.wait()
    checkpoints.close()
    abstract = checkpoint_lib.sharded_abstract(
        state_lib.abstract_train_state(config, model, init_fn=standins.init_variables), mesh)
    return config, abstract


def _damage(step_dir):
    """Truncates the OCDBT manifest of a checkpoint step to half its length."""
    path = os.path.join(step_dir, "default", "manifest.ocdbt")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def test_restore_falls_back_past_a_damaged_newest_checkpoint(tmp_path, caplog):
    _, abstract = _write_checkpoints(tmp_path)
    _damage(tmp_path / "checkpoints" / "3")
    checkpoints = checkpoint_lib.Checkpoints(str(tmp_path), keep=5, async_save=False)
    with caplog.at_level(logging.WARNING):
        state = checkpoints.restore(abstract, "latest")
    assert int(state.step) == 2 and checkpoints.restored_step == 2
    leaf = jax.tree.leaves(jax.device_get(state.params))[0]
    np.testing.assert_array_equal(leaf, np.full_like(leaf, 2))
    lines = [r.getMessage() for r in caplog.records]
    unreadable = [line for line in lines if "unreadable" in line and "/3 " in line + " "]
    assert len(unreadable) == 1 and "falling back to step 2" in unreadable[0]
    assert "DATA_LOSS" in unreadable[0] and "tensorstore_spec" not in unreadable[0]
    assert any("restored latest checkpoint step 2" in line for line in lines)
    assert checkpoints.latest_step() == 2  # the loop reports the step it resumes from
    # Saving step 3 again replaces the damaged copy instead of skipping it.
    checkpoints.save(3, state.replace(step=3))
    checkpoints.wait()
    assert checkpoints.latest_step() == 3
    assert int(checkpoints.restore(abstract, "latest", step=3).step) == 3
    checkpoints.close()


def test_inference_falls_back_from_a_damaged_best_checkpoint(tmp_path, monkeypatch, caplog):
    config, _ = _write_checkpoints(tmp_path, steps=(1, 2), best=2)
    checkpoint_lib.write_config(config, str(tmp_path))
    _damage(tmp_path / "checkpoints_best" / "2")
    monkeypatch.setattr(checkpoint_lib.vae, "build_model", standins.build_model)
    monkeypatch.setattr(checkpoint_lib, "abstract_train_state",
                        lambda c, m: state_lib.abstract_train_state(
                            c, m, init_fn=standins.init_variables))
    with caplog.at_level(logging.WARNING):
        _, _, variables = checkpoint_lib.restore_for_inference(str(tmp_path), "best")
    leaf = jax.tree.leaves(jax.device_get(variables["params"]))[0]
    np.testing.assert_array_equal(leaf, np.full_like(leaf, 2))  # the periodic step 2
    assert any("checkpoints_best/2 unreadable" in r.getMessage() for r in caplog.records)


def test_all_damaged_ends_with_one_clear_line(tmp_path):
    _write_checkpoints(tmp_path, steps=(1, 2))
    for step in ("1", "2"):
        _damage(tmp_path / "checkpoints" / step)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {HERE!r})
        import jax
        import training_standins as standins
        from handvae.training import checkpoint, sharding, state
        config = standins.tiny_config()
        model = standins.build_model(config.model)
        abstract = checkpoint.sharded_abstract(state.abstract_train_state(
            config, model, init_fn=standins.init_variables),
            sharding.make_mesh(jax.devices()[:1]))
        checkpoint.Checkpoints({str(tmp_path)!r}).restore(abstract)
    """)
    result = subprocess.run([sys.executable, "-c", script], check=False, cwd=ROOT,
                            capture_output=True,
                            text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    tail = "\n".join(line[:160] for line in result.stderr.strip().splitlines()[-30:])
    assert last.startswith("handvae.training.checkpoint.CheckpointReadError: no readable "
                           "latest checkpoint"), tail
    assert "step 2: ValueError: DATA_LOSS" in last and "step 1:" in last
    assert "Event loop is closed" not in result.stderr
    json.dumps(last)  # one line


def test_only_a_failed_reads_unretrieved_task_is_dropped():
    """asyncio's "never retrieved" log of orbax's read task is dropped; any other stays."""
    checkpoint_lib.quiet_closed_loop_noise()
    asyncio_log = logging.getLogger("asyncio")

    def record(coroutine):
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1,
                                 "Task exception was never retrieved\nfuture: <Task finished "
                                 f"coro=<{coroutine}() done> exception=ValueError('DATA_LOSS')>",
                                 None, None)

    assert not asyncio_log.filter(record("async_deserialize"))
    assert asyncio_log.filter(record("user_task"))


def test_a_newest_step_without_its_item_folder_leaves_the_older_ones_readable(tmp_path,
                                                                             caplog):
    """A step folder whose ``default/`` is gone (a copy cut short) is skipped, named."""
    import shutil
    _, abstract = _write_checkpoints(tmp_path, steps=(1, 2))
    shutil.rmtree(tmp_path / "checkpoints" / "2" / "default")
    checkpoints = checkpoint_lib.Checkpoints(str(tmp_path), keep=5, async_save=False)
    with caplog.at_level(logging.WARNING):
        state = checkpoints.restore(abstract, "latest")
    checkpoints.close()
    assert int(state.step) == 1 and checkpoints.restored_step == 1
    lines = [r.getMessage() for r in caplog.records]
    assert any("checkpoints/2 unreadable" in line and "default is missing" in line
               and "falling back to step 1" in line for line in lines), lines
    assert any("restored latest checkpoint step 1" in line for line in lines)


def test_inference_says_which_checkpoint_it_really_read(tmp_path, monkeypatch):
    config, _ = _write_checkpoints(tmp_path, steps=(1, 2), best=2)
    checkpoint_lib.write_config(config, str(tmp_path))
    _damage(tmp_path / "checkpoints_best" / "2")
    monkeypatch.setattr(checkpoint_lib.vae, "build_model", standins.build_model)
    monkeypatch.setattr(checkpoint_lib, "abstract_train_state",
                        lambda c, m: state_lib.abstract_train_state(
                            c, m, init_fn=standins.init_variables))
    *_, origin = checkpoint_lib.restore_with_origin(str(tmp_path), "best")
    assert origin == {"which": "latest", "checkpoint_step": 2}
