"""A real ``python -m experiments.train`` is SIGKILLed mid-run, resumed, and ends exactly where
an uninterrupted run ends (the real model, the real pipeline on the synthetic dummy data)."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from handvae.training import checkpoint as checkpoint_lib
from handvae.training import sharding
from handvae.training.state import abstract_train_state

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_STEPS = 40


def _command(workdir, data_dir):
    return [sys.executable, "-m", "experiments.train",
            "--config=experiments/configs/demo.py:strategy=R2P",
            f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
            f"--config.num_train_steps={NUM_STEPS}", "--config.batch_size=2",
            "--config.data.image_size=32", "--config.model.image_size=32",
            "--config.model.resnet_width=4", "--config.model.respel_width=8",
            "--config.model.latent_dim=8", "--config.checkpoint_every=2",
            "--config.keep_checkpoints=2", f"--config.eval_every={NUM_STEPS}",
            "--config.log_every=10", "--config.data.num_workers=1"]


def _env(cache_dir):
    env = dict(os.environ)
    env.update(XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
               # Compiled steps are shared by the three processes: only the first compiles.
               JAX_COMPILATION_CACHE_DIR=str(cache_dir),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return env


def _final_state(workdir):
    from handvae.models import vae
    config = checkpoint_lib.read_config(str(workdir))
    model = vae.build_model(config.model)
    abstract = checkpoint_lib.sharded_abstract(abstract_train_state(config, model),
                                               sharding.make_mesh(jax.devices()[:1]))
    checkpoints = checkpoint_lib.Checkpoints(str(workdir), read_only=True, async_save=False)
    try:
        assert checkpoints.latest_step() == NUM_STEPS
        return jax.device_get(checkpoints.restore(abstract, "latest"))
    finally:
        checkpoints.close()


def test_sigkilled_run_resumes_to_the_uninterrupted_parameters(tmp_path, rhd_synthetic_data_dir):
    env = _env(tmp_path / "jax_cache")
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_command(straight, rhd_synthetic_data_dir), cwd=REPO, env=env, check=True,
                   capture_output=True, timeout=600)

    process = subprocess.Popen(_command(killed, rhd_synthetic_data_dir), cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_checkpoint = killed / "checkpoints" / "2"
    deadline = time.time() + 300
    while not first_checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    saved = sorted(int(s) for s in os.listdir(killed / "checkpoints") if s.isdigit())
    assert saved and max(saved) < NUM_STEPS, f"the run finished before the kill: {saved}"
    assert not (killed / "final_metrics.json").exists()

    resumed = subprocess.run(_command(killed, rhd_synthetic_data_dir), cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {killed} from step {max(saved)}" in resumed.stderr

    expected, actual = _final_state(straight), _final_state(killed)
    for name in ("params", "batch_stats", "opt_state"):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                     getattr(expected, name), getattr(actual, name))
    moved = np.abs(np.asarray(jax.tree.leaves(expected.opt_state)[1])).max()
    assert moved > 0  # Adam's moments moved: the runs trained

    # The evaluator's entry point reads the same work directory.
    config, model, variables = checkpoint_lib.restore_for_inference(str(killed), "best")
    assert config.num_train_steps == NUM_STEPS and model.strategy == "R2P"
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(variables["params"]),
                 actual.params)
