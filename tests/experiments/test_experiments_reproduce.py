"""experiments.reproduce: the run plan, the report over seeds, and (slow) a tiny end-to-end run."""

import json
import os

import numpy as np
import pytest

from experiments import reproduce, reproduce_report
from experiments.configs import reproduce as reproduce_config


def test_plan_covers_each_target_once():
    table1 = reproduce.plan_runs(["table1"], [0, 1], "cpu")
    assert len(table1) == 12
    assert {r.seed for r in table1} == {0, 1}
    fig5 = reproduce.plan_runs(["table1", "fig5"], [0], "cpu")
    assert len(fig5) == 7 and sum(not r.view_correction for r in fig5) == 1
    fig8 = reproduce.plan_runs(["fig8"], [0], "cpu")
    # 4 shares below 100 % × (supervised, weak) + the full S4 run shared by both curves.
    assert len(fig8) == 9
    everything = reproduce.plan_runs(list(reproduce.TARGETS), [0], "cpu")
    assert len(everything) == 6 + 1 + 8   # S4 at m = 100 % is Table 1's run
    assert len({r.name for r in everything}) == len(everything)
    some = reproduce.plan_runs(["fig8"], [0], "cpu", shares=[0.05, 0.1])
    assert sorted(r.name for r in some) == sorted(
        f"RC2CHP_poe_{field}={m}_seed0" for field in ("labelled", "train_fraction")
        for m in (0.05, 0.1))


def test_plan_takes_any_share_in_the_unit_interval_and_rejects_others():
    low = reproduce.plan_runs(["fig8"], [0], "cpu", shares=[0.01])
    assert sorted(r.name for r in low) == ["RC2CHP_poe_labelled=0.01_seed0",
                                           "RC2CHP_poe_train_fraction=0.01_seed0"]
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="--shares"):
            reproduce.plan_runs(["fig8"], [0], "cpu", shares=[bad])
    supervised = reproduce.plan_runs(["fig8"], [0], "cpu", shares=[0.01, 1.0],
                                     arms=["supervised"])
    assert [r.name for r in supervised] == ["RC2CHP_poe_train_fraction=0.01_seed0",
                                            "RC2CHP_poe_seed0"]
    with pytest.raises(ValueError, match="--arms"):
        reproduce.plan_runs(["fig8"], [0], "cpu", shares=[0.01], arms=["semi"])


def test_extra_arguments_reach_every_run_and_its_name():
    runs = reproduce.plan_runs(["table1"], [1], "cpu", strategies=["RC2CHP_kl"],
                               extra={"kl_reduction": "mean"})
    assert [r.name for r in runs] == ["RC2CHP_kl_kl_reduction=mean_seed1"]
    config = reproduce_config.get_config(runs[0].config_arg)
    assert config.loss.kl_reduction == "mean" and config.seed == 1
    bf16 = reproduce_config.get_config("strategy=R2P,scale=cpu,compute_dtype=bfloat16")
    assert bf16.model.compute_dtype == "bfloat16"
    assert reproduce_config.get_config("strategy=R2P").model.compute_dtype == "float32"
    weak = reproduce_config.get_config(
        "strategy=RC2CHP_poe,labelled=0.01,unlabelled_weighting=separate,lambda_cloud=10")
    assert (weak.loss.unlabelled_weighting, weak.loss.lambda_cloud) == ("separate", 10.0)
    paper = reproduce_config.get_config("strategy=RC2CHP_poe")
    assert (paper.loss.unlabelled_weighting, paper.loss.lambda_cloud) == ("pooled", 1.0)
    for bad in ({"strategy": "R2P"}, {"colour": "red"}):
        with pytest.raises(ValueError, match="--extra"):
            reproduce.plan_runs(["table1"], [0], "cpu", extra=bad)


def test_validation_curve_reads_the_trainer_metrics(tmp_path):
    rows = [{"step": 1, "split": "train", "loss": 3.0},
            {"step": 2, "split": "validation", "mean_epe_mm": 40.0},
            {"step": 4, "split": "validation", "mean_epe_mm": 35.0},
            {"step": 6, "split": "validation", "mean_epe_mm": 36.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    curve = reproduce.validation_curve(str(tmp_path))
    assert curve == {"steps": [2, 4, 6], "mean_epe_mm": [40.0, 35.0, 36.0], "best_step": 4,
                     "best_mean_epe_mm": 35.0}


@pytest.mark.parametrize("targets,seeds,scale", [(["table3"], [0], "cpu"), ([], [0], "cpu"),
                                                 (["table1"], [], "cpu"),
                                                 (["table1"], [0], "huge")])
def test_plan_rejects_bad_arguments(targets, seeds, scale):
    with pytest.raises(ValueError):
        reproduce.plan_runs(targets, seeds, scale)


def test_every_planned_run_has_a_valid_config():
    for run in reproduce.plan_runs(list(reproduce.TARGETS), [3], "cpu"):
        config = reproduce_config.get_config(run.config_arg)
        assert config.seed == 3
        assert config.data.view_correction == run.view_correction
        assert 0 < config.data.train_fraction <= 1 and 0 < config.data.labelled_fraction <= 1


def test_ablation_arguments_move_the_schedule_and_beta_prime():
    default = reproduce_config.get_config("strategy=RC2CHP_kl")
    assert default.num_train_steps == reproduce_config.SCALES["cpu"].steps
    assert default.loss.beta_prime == 1.0
    short = reproduce_config.get_config("strategy=RC2CHP_kl,steps=1000,beta_prime=0.01")
    assert short.num_train_steps == 1000 and short.loss.beta_prime == 0.01
    assert tuple(short.optimizer.lr_boundaries) == (600, 850)
    assert short.loss.beta_anneal_steps == 500 and short.eval_every == 125
    with pytest.raises(ValueError, match="steps"):
        reproduce_config.get_config("steps=-5")
    assert reproduce_config.get_config("lr=1e-4").optimizer.lr == 1e-4   # the paper's
    assert reproduce_config.get_config("").optimizer.lr == reproduce_config.SCALES["cpu"].lr
    with pytest.raises(ValueError, match="lr"):
        reproduce_config.get_config("lr=-1")


def _record(config_arg, seed, mean, curve_value=0.5):
    thresholds = np.linspace(0, 50, 20).tolist()
    return {"config_arg": config_arg, "seed": seed,
            "test": {"mean_epe_mm": mean, "median_epe_mm": mean - 1, "auc_20_50": 0.5,
                     "pck_thresholds_mm": thresholds, "pck": [curve_value] * 20}}


def test_paper_scale_feeds_the_step_from_worker_processes(rhd_synthetic_data_dir):
    """A GPU host's cores are used by processes, not GIL-bound threads; rows stay 256²."""
    from handvae.data import pipeline

    config = reproduce_config.get_config("strategy=R2P,scale=paper")
    assert config.data.worker_kind == "processes" and config.data.num_workers >= 2
    assert reproduce_config.get_config("scale=cpu").data.worker_kind == "threads"
    config.data.data_dir, config.data.num_workers = rhd_synthetic_data_dir, 2
    with pipeline.train_batches(config.data, 2, seed=0, keys=("rgb", "pose")) as batches:
        batch = next(batches)
    assert batch["rgb"].shape == (2, 256, 256, 3) and np.all(np.isfinite(batch["rgb"]))


def test_report_gives_mean_and_std_over_seeds(tmp_path):
    runs = [_record("strategy=R2P,scale=cpu,seed=0", 0, 20.0),
            _record("strategy=R2P,scale=cpu,seed=1", 1, 22.0),
            _record("strategy=RC2CHP_poe,scale=cpu,seed=0", 0, 15.0),
            _record("strategy=RC2CHP_poe,scale=cpu,seed=1", 1, 15.0),
            _record("strategy=R2P,scale=cpu,seed=0,view_correction=0", 0, 30.0),
            _record("strategy=RC2CHP_poe,scale=cpu,seed=0,train_fraction=0.05", 0, 40.0),
            _record("strategy=RC2CHP_poe,scale=cpu,seed=0,labelled=0.05", 0, 35.0)]
    payload = {"scale": "cpu", "targets": list(reproduce.TARGETS), "seeds": [0, 1],
               "commit": "abc", "runs": runs}
    written = reproduce_report.write_all(str(tmp_path), payload)
    assert written == ["table1.md", "fig5.png", "fig8.png", "results.json"]  # no curves given
    table = (tmp_path / "table1.md").read_text()
    assert "| `R2P` | S1 | 21.00 ± 1.41 |" in table        # sample std, ddof = 1
    assert "| `RC2CHP_poe` | S4 | 15.00 ± 0.00 |" in table
    assert "S4/S1 mean-EPE ratio: 0.714" in table and "Welch's p = 0.105" in table  # t = 6, df = 1
    assert (tmp_path / "fig5.png").stat().st_size > 0
    assert (tmp_path / "fig8.png").stat().st_size > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["fig5_no_vc"]["mean_epe_mm"] == 30.0
    supervised = saved["fig8"]["supervised"]
    assert supervised[0]["mean_epe_mm"] == 40.0 and supervised[-1]["mean_epe_mm"] == 15.0
    assert saved["fig8"]["weakly supervised"][0]["mean_epe_mm"] == 35.0


def test_welch_p_matches_a_hand_computed_t_test():
    # a = (20, 22), b = (15, 16): t = (21 − 15.5) / sqrt(2/2 + 0.5/2) = 4.919;
    # Welch–Satterthwaite df = 1.25² / (1²/1 + 0.25²/1) = 1.4706; p from scipy's t.
    from scipy import stats
    expected = 2 * stats.t.sf(5.5 / np.sqrt(1.25), 1.25 ** 2 / (1 + 0.25 ** 2))
    np.testing.assert_allclose(reproduce_report.welch_p([20, 22], [15, 16]), expected)
    assert reproduce_report.welch_p([20], [15, 16]) is None
    assert reproduce_report.welch_p([20, 20], [15, 15]) is None


def test_report_of_an_ablation_groups_by_its_extra_arguments(tmp_path):
    runs = [_record(f"strategy={s},scale=cpu,seed={seed},kl_reduction=mean", seed, m)
            for s, seed, m in (("R2P", 0, 20.0), ("R2P", 1, 21.0),
                               ("RC2CHP_kl", 0, 18.0), ("RC2CHP_kl", 1, 18.5))]
    for run, best in zip(runs, (25.0, 26.0, 22.0, 23.0)):
        run["validation"] = {"steps": [2, 4], "mean_epe_mm": [30.0, best], "best_step": 4,
                             "best_mean_epe_mm": best}
        run["test"]["checkpoint_step"] = 4
    payload = {"scale": "cpu", "targets": ["table1"], "seeds": [0, 1], "commit": "abc",
               "runs": runs, "extra": {"kl_reduction": "mean"}}
    reproduce_report.write_all(str(tmp_path), payload)
    table = (tmp_path / "table1.md").read_text()
    assert "{'kl_reduction': 'mean'}" in table
    assert "| `RC2CHP_kl` | S3 | 18.25 ± 0.35 |" in table and "| 22.50 | 4, 4 |" in table
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["table1"]["R2P"]["validation_best_mean_epe_mm_per_seed"] == [25.0, 26.0]
    assert (tmp_path / "validation.png").stat().st_size > 0   # every run's curve


def test_read_test_metrics_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="final_metrics.json"):
        reproduce_report.read_test_metrics(str(tmp_path))
    (tmp_path / "final_metrics.json").write_text(json.dumps({"step": 2.0}))
    with pytest.raises(KeyError, match="no 'test' entry"):
        reproduce_report.read_test_metrics(str(tmp_path))


def test_read_test_metrics_reads_the_trainers_final_test(tmp_path):
    (tmp_path / "final_metrics.json").write_text(
        json.dumps({"mean_epe_mm": 40.0, "test": {"mean_epe_mm": 12.5}}))
    assert reproduce_report.read_test_metrics(str(tmp_path)) == {"mean_epe_mm": 12.5}


@pytest.mark.slow
def test_tiny_reproduction_end_to_end_and_resume(tmp_path):
    root = tmp_path / "repro"
    payload = reproduce.reproduce(str(root), scale="tiny", targets=["table1"], seeds=[0],
                                  strategies=["R2P"])
    assert len(payload["runs"]) == 1
    assert np.isfinite(payload["runs"][0]["test"]["mean_epe_mm"])
    assert os.path.exists(root / "table1.md") and os.path.exists(root / "results.json")
    again = reproduce.reproduce(str(root), scale="tiny", targets=["table1"], seeds=[0],
                                strategies=["R2P"])
    assert again["runs"][0].get("skipped") is True


def test_report_with_a_single_seed_shows_no_spread(tmp_path):
    runs = [_record("strategy=R2P,scale=cpu,seed=0", 0, 20.0),
            _record("strategy=R2P,scale=cpu,seed=1", 1, 22.0),
            _record("strategy=RC2CHP_poe,scale=cpu,seed=0", 0, 15.0)]
    payload = {"scale": "cpu", "targets": ["table1"], "seeds": [0, 1], "commit": "abc",
               "runs": runs, "planned_runs": 4}
    reproduce_report.write_all(str(tmp_path), payload)
    table = (tmp_path / "table1.md").read_text()
    assert "| `RC2CHP_poe` | S4 | 15.00 (1 seed) |" in table
    assert "no p-value (a strategy has a single seed)" in table and "3 of 4 planned runs" in table


@pytest.mark.slow
def test_tiny_reproduction_as_a_population_matches_the_sequential_runs(tmp_path):
    """--population vmap: a setting's seeds as one program, the same records and numbers."""
    args = {"scale": "tiny", "targets": ["table1"], "seeds": [0, 1], "strategies": ["R2P"],
            "data_root": str(tmp_path / "data")}
    alone = reproduce.reproduce(str(tmp_path / "alone"), **args)
    together = reproduce.reproduce(str(tmp_path / "together"), how="population", **args)
    assert os.path.isdir(tmp_path / "together" / "runs" / "populations" / "R2P")
    for a, b in zip(alone["runs"], together["runs"]):
        assert a["name"] == b["name"] and sorted(a) == sorted(b)
        np.testing.assert_allclose(b["test"]["mean_epe_mm"], a["test"]["mean_epe_mm"],
                                   rtol=1e-4)
        assert b["validation"]["steps"] == a["validation"]["steps"]
