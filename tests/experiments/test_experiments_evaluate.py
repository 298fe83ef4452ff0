"""End to end: train the real model 2 steps on the dummy synthetic RHD set, then evaluate it."""

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from experiments import evaluate
from experiments.configs import demo
from handvae.data import source as source_lib
from handvae.evaluation import metrics
from handvae.training import loop

PNG = b"\x89PNG\r\n\x1a\n"


def _tiny_config(strategy: str, data_dir: str):
    config = demo.get_config(f"strategy={strategy},tiny")
    config.data.data_dir = data_dir
    config.num_train_steps = 2
    config.batch_size = 2
    config.log_every = config.eval_every = config.checkpoint_every = 2
    config.num_eval_examples = -1
    return config


def _train_and_evaluate(tmp_path, data_dir, strategy):
    workdir = str(tmp_path / strategy)
    final = loop.train_and_evaluate(_tiny_config(strategy, data_dir), workdir)
    result = evaluate.evaluate_workdir(workdir, split="test", which="best",
                                       num_figure_examples=2)
    return workdir, final, result


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG


@pytest.fixture(scope="module")
def r2p_run(tmp_path_factory, rhd_synthetic_data_dir):
    """A 2-step R2P run on a private copy of the dummy data (tests edit its build record)."""
    tmp_path = tmp_path_factory.mktemp("r2p")
    data_dir = tmp_path / "tfds"
    shutil.copytree(rhd_synthetic_data_dir, data_dir)
    workdir, final, result = _train_and_evaluate(tmp_path, str(data_dir), "R2P")
    return workdir, final, result, data_dir


def test_two_step_checkpoint_evaluates_end_to_end(r2p_run):
    workdir, final, result, _ = r2p_run
    out = os.path.join(workdir, "eval", "test_best")
    written = json.load(open(os.path.join(out, "metrics.json")))
    assert written["num_examples"] == 2 and written["split"] == "test"
    assert written["strategy"] == "R2P" and written["which"] == "best"
    assert written["dataset"] == "synthetic" and written["checkpoint"] == "best-by-validation"
    assert written["checkpoint_step"] == final["test"]["checkpoint_step"]
    assert written["selection_split"] == "validation"
    for key in ("mean_epe_mm", "median_epe_mm", "auc_20_50", "auc_0_50", "mean_epe_all_mm"):
        assert math.isfinite(written[key]), key
    assert written["all_keypoints"]["mean_epe_mm"] == written["mean_epe_all_mm"]
    assert len(written["pck"]) == len(metrics.PCK_THRESHOLDS_MM)
    # The trainer's test evaluation of the best checkpoint and the offline report are the
    # same code on the same checkpoint: the same numbers.
    for key in ("mean_epe_mm", "mean_epe_all_mm", "auc_20_50"):
        assert written[key] == pytest.approx(final["test"][key], rel=1e-5), key
    md = open(os.path.join(out, "metrics.md")).read()
    assert "Checkpoint: best-by-validation, chosen on the 'validation' split" in md
    assert "Over all 21 keypoints" in md
    assert result["files"] == ["metrics.json", "metrics.md", "pck.png", "poses.png",
                               "interpolation.png"]  # S1 decodes no cloud: no Fig. 3
    for name in result["files"]:
        path = os.path.join(out, name)
        assert os.path.getsize(path) > 0
        if name.endswith(".png"):
            assert _is_png(path), name
    assert "| 12 | middle_mcp |" in open(os.path.join(out, "metrics.md")).read()
    assert math.isfinite(written["constant_pose_baseline"]["mean_epe_mm"])


def test_constant_pose_baseline_by_hand():
    # Two hands that differ only in joint 3 by 2 units along x; the mean pose sits halfway,
    # so joint 3 is 1 unit = 1 · 0.02 m = 20 mm off in both and every other joint is exact.
    poses = np.zeros((2, 21, 3))
    poses[1, 3, 0] = 2.0
    visible = np.ones((2, 21))
    baseline = metrics.constant_pose_baseline(poses, np.full(2, 0.02), visible)
    assert baseline["mean_epe_mm"] == pytest.approx(20.0 / 21)
    assert baseline["median_epe_mm"] == pytest.approx(20.0 / 21)


def test_evaluate_reports_a_missing_workdir(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        evaluate.evaluate_workdir(str(tmp_path / "nothing"))


@pytest.mark.slow
def test_cloud_strategy_writes_reconstruction_and_cli_runs(tmp_path, rhd_synthetic_data_dir):
    workdir, _, result = _train_and_evaluate(tmp_path, rhd_synthetic_data_dir, "RC2CHP_poe")
    assert "reconstruction.png" in result["files"]
    assert _is_png(os.path.join(workdir, "eval", "test_best", "reconstruction.png"))
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "experiments.evaluate", "--workdir", workdir,
                           "--which", "latest", "--out", str(out), "--num_figure_examples",
                           "0"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "read only" not in proc.stderr   # orbax's read-only notice is dropped
    cli = json.load(open(out / "metrics.json"))
    assert cli["which"] == "latest"
    assert np.isfinite(cli["mean_epe_mm"])


def test_split_reports_are_kept_apart_and_the_test_split_must_be_whole(r2p_run):
    workdir, _, _, data_dir = r2p_run
    test_report = os.path.join(workdir, "eval", "test_best", "metrics.json")
    before = open(test_report).read()
    train = evaluate.evaluate_workdir(workdir, split="train", which="latest",
                                      make_figures=False)
    assert train["split"] == "train" and train["num_examples"] == 2  # 3 frames, 1 validation
    assert os.path.exists(os.path.join(workdir, "eval", "train_latest", "metrics.json"))
    assert open(test_report).read() == before  # --split train never overwrites the test one

    # The build recorded more test frames than it stored: the test split is refused.
    (version,) = [d for d in os.listdir(data_dir / "rhd" / "synthetic") if d[0].isdigit()]
    build_report = data_dir / "rhd" / "synthetic" / version / source_lib.BUILD_REPORT
    try:
        build_report.write_text(json.dumps({"splits": {"test": {"defined": 3, "stored": 2}}}))
        with pytest.raises(ValueError, match=r"'test' split holds 2 frames .* defines 3"):
            evaluate.evaluate_workdir(workdir, make_figures=False)
        build_report.write_text(json.dumps({"splits": {"test": {"defined": 2, "stored": 2}}}))
        assert evaluate.evaluate_workdir(workdir, make_figures=False)["num_examples"] == 2
    finally:
        build_report.unlink()


def test_published_test_sizes_are_checked_without_a_build_record():
    config = demo.get_config("strategy=R2P")
    config.data.dataset = "rhd"
    assert evaluate.defined_frames(config.data, "test") == 2728
    with pytest.raises(ValueError, match="holds 2727 frames but the data set defines 2728"):
        evaluate.check_test_frames(config.data, "test", 2727)
    evaluate.check_test_frames(config.data, "train", 5)  # only the test split is checked
    config.data.dataset = "stb"
    assert evaluate.defined_frames(config.data, "test") == 3000
    config.data.dataset = "synthetic"
    config.data.data_dir = "/nonexistent"
    assert evaluate.defined_frames(config.data, "test") is None  # nothing recorded: no check


# --- Safety (issue 24): partial and fallen-back evaluations say so -------------------------

def test_a_partial_evaluation_never_replaces_the_full_split_report(r2p_run):
    workdir, *_ = r2p_run
    full = os.path.join(workdir, "eval", "test_best", "metrics.json")
    before = open(full).read()
    assert json.loads(before)["full_split"] is True
    part = evaluate.evaluate_workdir(workdir, num_examples=1, make_figures=False)
    assert part["num_examples"] == 1 and part["requested_examples"] == 1
    assert part["full_split"] is False
    assert os.path.exists(os.path.join(workdir, "eval", "test_best_first1", "metrics.json"))
    assert open(full).read() == before


def test_a_fall_back_records_the_checkpoint_really_read(r2p_run, tmp_path):
    workdir = str(tmp_path / "copy")
    shutil.copytree(r2p_run[0], workdir)
    (best,) = os.listdir(os.path.join(workdir, "checkpoints_best"))
    manifest = os.path.join(workdir, "checkpoints_best", best, "default", "manifest.ocdbt")
    with open(manifest, "r+b") as f:
        f.truncate(os.path.getsize(manifest) // 2)
    result = evaluate.evaluate_workdir(workdir, make_figures=False)
    latest = max(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")))
    assert (result["which"], result["checkpoint"]) == ("latest", "latest")
    assert result["checkpoint_step"] == latest
    assert os.path.exists(os.path.join(workdir, "eval", "test_latest", "metrics.json"))
