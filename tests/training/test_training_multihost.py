"""Two processes form one training job (``jax.distributed`` over 127.0.0.1, gloo collectives)
and train exactly like one process with two devices, including a resume.

Each launch is ``python -m experiments.train`` as a user would start it on two hosts (one CPU
device per process, ``JAX_COORDINATOR_ADDRESS``/``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID``);
the reference is one process with two forced CPU devices. Slow: six launches of the trainer.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
STEPS = 4  # trained in two legs: 0 → 2, then resumed 2 → 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_args(workdir, data_dir, steps):
    return [
        sys.executable, "-m", "experiments.train",
        "--config", f"{ROOT}/experiments/configs/demo.py:strategy=R2P,steps={STEPS}",
        "--workdir", str(workdir), f"--config.data.data_dir={data_dir}",
        f"--config.num_train_steps={steps}", "--config.batch_size=2",
        "--config.data.image_size=32", "--config.model.image_size=32",
        "--config.data.heatmap_size=8", "--config.model.heatmap_size=8",
        "--config.model.resnet_width=4", "--config.model.latent_dim=8",
        "--config.model.pose_hidden=16", "--config.data.num_workers=1",
        "--config.log_every=1", "--config.eval_every=2", "--config.checkpoint_every=2",
        "--config.num_eval_examples=2",
        # A constant learning rate, so the resumed leg moves the parameters as much as the
        # first (the comparison then tests the resume, not a step of lr 1e-5).
        "--config.optimizer.lr_boundaries=(1000,2000)",
    ]


def _env(devices: int, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JAX_COORDINATOR", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"))}
    env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return env


def _check(processes, logs):
    for process in processes:
        try:
            process.wait(timeout=540)
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            raise
    for process, log in zip(processes, logs):
        assert process.returncode == 0, pathlib.Path(log).read_text()[-4000:]


def train_one_process(workdir, data_dir, steps, log_dir):
    log = log_dir / f"single_{steps}.log"
    with open(log, "w") as f:
        process = subprocess.Popen(_train_args(workdir, data_dir, steps), cwd=ROOT,
                                   env=_env(2), stdout=f, stderr=subprocess.STDOUT)
        _check([process], [log])


def train_two_processes(workdir, data_dir, steps, log_dir):
    address = f"127.0.0.1:{_free_port()}"
    processes, logs = [], []
    for index in range(2):
        log = log_dir / f"multi_{steps}_{index}.log"
        logs.append(log)
        with open(log, "w") as f:
            processes.append(subprocess.Popen(
                _train_args(workdir, data_dir, steps), cwd=ROOT, stdout=f,
                stderr=subprocess.STDOUT,
                env=_env(1, JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES="2",
                         JAX_PROCESS_ID=str(index))))
    _check(processes, logs)


def _variables(workdir, step=None):
    from handvae.training import checkpoint
    _, _, variables = checkpoint.restore_for_inference(str(workdir), "latest", step=step)
    return jax.device_get(variables)


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_two_devices(tmp_path,
                                                               rhd_synthetic_data_dir):
    single, multi, logs = tmp_path / "single", tmp_path / "multi", tmp_path / "logs"
    logs.mkdir()
    for steps in (2, STEPS):  # the second leg resumes from the first's checkpoint
        train_one_process(single, rhd_synthetic_data_dir, steps, logs)
        train_two_processes(multi, rhd_synthetic_data_dir, steps, logs)
    assert "resuming" in (logs / f"multi_{STEPS}_0.log").read_text()
    assert "Gloo" in (logs / f"multi_{STEPS}_1.log").read_text()  # really two processes

    one, two = _variables(single), _variables(multi)
    for name in ("params", "batch_stats"):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
                     one[name], two[name])
    # The resumed leg really trained: step 4 is not step 2 (the check is not vacuous).
    halfway = _variables(multi, step=2)["params"]
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(a - b).max(), two["params"],
                                         halfway))
    assert max(moved) > 1e-3
    first = json.loads((single / "final_metrics.json").read_text())
    second = json.loads((multi / "final_metrics.json").read_text())
    assert first["step"] == second["step"] == STEPS
    np.testing.assert_allclose(second["train_loss"], first["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(second["mean_epe_mm"], first["mean_epe_mm"], rtol=1e-5)

    # Each process wrote its own share: checkpoint data per process, logs once (process 0).
    step_dir = multi / "checkpoints" / str(STEPS) / "default"
    assert (step_dir / "ocdbt.process_0").is_dir()
    lines = (multi / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines if '"train"' in line]
    assert len(steps) == len(set(steps)), "metrics written by more than one process"
