"""``experiments.train`` writes a run's config.json only once the config is known to be good."""

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "training"))
import training_standins as standins  # noqa: E402
from handvae.training import loop  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step stand-in run: config.json and checkpoints."""
    config = standins.tiny_config()
    config.num_train_steps = 2
    workdir = tmp_path_factory.mktemp("train_config") / "run"
    loop.train_and_evaluate(config, str(workdir), batches=standins.batches(config),
                            eval_batches=standins.eval_batches(config),
                            functions=standins.FUNCTIONS)
    return config, workdir


def test_a_strategy_typo_leaves_the_trained_runs_config(trained):
    config, workdir = trained
    config = config.copy_and_resolve_references()
    stored = (workdir / "config.json").read_text()
    config.model.strategy = "R2PP"  # the real model's registry rejects it
    with pytest.raises(ValueError, match="unknown strategy 'R2PP'"):
        loop.train_and_evaluate(config, str(workdir))
    assert (workdir / "config.json").read_text() == stored


def test_cli_refuses_a_shape_change_naming_it(trained):
    _, workdir = trained
    stored = (workdir / "config.json").read_text()
    base = [sys.executable, "-m", "experiments.train",
            "--config=experiments/configs/demo.py:strategy=R2P", f"--workdir={workdir}"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    # The stand-in run's stored model has other fields than the demo config: refused, named.
    proc = subprocess.run(base + ["--config.model.latent_dim=16"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "model.latent_dim" in proc.stderr and "cannot change on resume" in proc.stderr
    assert "strict" not in proc.stderr
    assert (workdir / "config.json").read_text() == stored


def test_zero_steps_is_refused_before_anything_is_written(tmp_path):
    config = standins.tiny_config()
    config.num_train_steps = 0
    with pytest.raises(ValueError, match="config.num_train_steps must be a positive integer"):
        loop.train_and_evaluate(config, str(tmp_path / "fresh"))
    assert not (tmp_path / "fresh").exists()


def test_cli_user_errors_are_one_line_and_leave_nothing(tmp_path):
    """A --workdir that is a file, and data not built: exit 2, one line, nothing written."""
    (tmp_path / "file").write_text("not a folder")
    base = [sys.executable, "-m", "experiments.train",
            "--config=experiments/configs/demo.py:strategy=R2P,tiny"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    for workdir, data_dir, expected in (
            (tmp_path / "file", tmp_path, "is a file, not a folder"),
            (tmp_path / "fresh", tmp_path / "no_data", "no built rhd/synthetic")):
        proc = subprocess.run(base + [f"--workdir={workdir}",
                                      f"--config.data.data_dir={data_dir}"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr and expected in proc.stderr, proc.stderr[-2000:]
        assert [line for line in proc.stderr.splitlines() if "experiments.train:" in line]
    assert (tmp_path / "file").read_text() == "not a folder"
    assert not (tmp_path / "fresh").exists()
