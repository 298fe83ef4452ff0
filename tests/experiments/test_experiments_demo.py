"""The demo preset's bookkeeping: resume markers, clear failures, the report it writes.

The steps run through ``experiments.launcher``; the stand-ins replace its child runner."""

import json
import os
import sys

import numpy as np
import pytest

from experiments import demo, launcher, launcher_records
from handvae.evaluation import metrics


def test_trained_check(tmp_path):
    workdir = tmp_path / "w"
    workdir.mkdir()
    assert not launcher_records.trained(str(workdir), 10)
    (workdir / "final_metrics.json").write_text(json.dumps({"step": 5.0}))
    assert not launcher_records.trained(str(workdir), 10)  # a shorter run resumes, not skips
    assert launcher_records.trained(str(workdir), 5)


def test_missing_parts_and_failed_steps_are_named(monkeypatch):
    monkeypatch.setitem(launcher.NEEDS, "train", ("handvae.no_such_module", "json"))
    assert launcher.missing_modules("train") == ["handvae.no_such_module"]
    with pytest.raises(demo.StepFailed, match="needs handvae.no_such_module"):
        launcher.require("train")
    with pytest.raises(demo.StepFailed, match="exit 3.*rerun it alone"):
        demo._run([sys.executable, "-c", "raise SystemExit(3)"], "generate")


def test_write_report(tmp_path):
    rng = np.random.default_rng(0)
    results = {"S1 (R2P)": metrics.summarize_errors(rng.gamma(2.0, 12.0, (8, 21))),
               "S4 (RC2CHP_poe)": metrics.summarize_errors(rng.gamma(2.0, 9.0, (8, 21)))}
    results["S1 (R2P)"]["constant_pose_baseline"] = {"mean_epe_mm": 53.25, "auc_20_50": 0.1}
    workdir = tmp_path / "workdirs" / "S4_RC2CHP_poe"
    os.makedirs(demo.eval_dir(str(workdir)))
    with open(os.path.join(demo.eval_dir(str(workdir)), "reconstruction.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\nfake")
    path = demo.write_report(
        str(tmp_path), results, {"S1": ("R2P", str(tmp_path / "none")),
                                 "S4": ("RC2CHP_poe", str(workdir))},
        {"generate_s": 12.5, "build_s": "skipped (exists)"},
        {"num_train": 8, "num_eval": 8, "steps": 3, "seed": 0, "cpu_count": 2})
    text = open(path).read()
    s4 = results["S4 (RC2CHP_poe)"]
    assert f"| S4 (RC2CHP_poe) | {s4['mean_epe_mm']:.2f} |" in text
    assert "| paper S4, RHD (real data) | 13.14 |" in text
    assert "| constant guess (test mean pose) | 53.25 | – | 0.100 |" in text
    assert "figures/S4_RC2CHP_poe_reconstruction.png" in text
    assert "| generate | 12 s |" in text and "| build | skipped (exists) |" in text
    assert (tmp_path / "pck.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "figures" / "S4_RC2CHP_poe_reconstruction.png").exists()


def test_skipped_steps_keep_the_time_measured_by_the_run_that_did_them(tmp_path):
    earlier = launcher_records.earlier_seconds
    assert earlier(str(tmp_path), "build_s") == "skipped (exists)"
    (tmp_path / "timings.json").write_text(json.dumps({"build_s": 81.4, "train_S1_s": "x"}))
    assert earlier(str(tmp_path), "build_s") == "81 s (earlier run)"
    assert earlier(str(tmp_path), "train_S1_s") == "skipped (exists)"
    (tmp_path / "timings.json").write_text(json.dumps({"build_s": "81 s (earlier run)"}))
    assert earlier(str(tmp_path), "build_s") == "81 s (earlier run)"


# --- Safety: arguments first, delete only demo folders (issue 14, items 1 and 7) ---------

def _main_refuses(capsys, argv):
    with pytest.raises(SystemExit) as error:
        demo.main(argv)
    assert error.value.code == 2
    return capsys.readouterr().err


def test_force_checks_arguments_first_and_deletes_only_demo_folders(tmp_path, monkeypatch,
                                                                    capsys):
    earlier = tmp_path / "demo"
    demo.prepare_out(str(earlier), force=False)
    (earlier / "report.md").write_text("earlier results")
    for bad in (["--num-train", "0"], ["--num-eval", "-1"], ["--steps", "0"],
                ["--eval-examples", "0"]):
        err = _main_refuses(capsys, ["--out", str(earlier), "--force", *bad])
        assert bad[0] in err
        assert (earlier / "report.md").read_text() == "earlier results"  # nothing deleted

    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("precious")
    for force in ([], ["--force"]):
        err = _main_refuses(capsys, ["--out", str(user), *force])
        assert "not written by the demo" in err
    assert (user / "notes.txt").read_text() == "precious"
    monkeypatch.chdir(earlier)
    for out in (".", str(tmp_path)):
        assert "working directory" in _main_refuses(capsys, ["--out", out, "--force"])
    assert (earlier / "report.md").exists()


def test_a_huge_num_train_is_refused_with_the_sizes(tmp_path, capsys):
    err = _main_refuses(capsys, ["--out", str(tmp_path / "d"), "--num-train", str(10**12)])
    assert "--num-train + --num-eval" in err and "GB" in err
    assert not (tmp_path / "d").exists()


class _FakeSteps:
    """Stands in for the launcher's child steps and the evaluation: records what ran."""

    def __init__(self, monkeypatch):
        self.ran: list[str] = []
        monkeypatch.setattr(launcher, "call", self.run)
        monkeypatch.setattr(launcher, "missing_modules", lambda step: [])
        from experiments import evaluate
        monkeypatch.setattr(evaluate, "evaluate_workdir", self.evaluate)

    def run(self, cmd, step, log_path=None, *, echo=False):
        self.ran.append(step)
        module = cmd[2]
        if module == "experiments.train":
            config = cmd[cmd.index("--config") + 1]
            assert os.path.isabs(config) and os.path.exists(config.split(":")[0])
            workdir = cmd[cmd.index("--workdir") + 1]
            os.makedirs(workdir, exist_ok=True)
            steps = int(config.rsplit("steps=", 1)[1])
            with open(os.path.join(workdir, "final_metrics.json"), "w") as f:
                json.dump({"step": steps}, f)
            with open(os.path.join(workdir, "runs"), "a") as f:
                f.write("run\n")  # one line per training run in this work directory
        else:
            out = cmd[cmd.index("--out" if module == "data_prep.synthetic" else "--data_dir")
                      + 1]
            os.makedirs(out, exist_ok=True)
        return 1.0

    def evaluate(self, workdir, *, out_dir, name, **kwargs):
        self.ran.append(f"evaluate {name.split()[0]}")
        os.makedirs(out_dir, exist_ok=True)
        requested = kwargs.get("num_examples", -1)
        result = {"mean_epe_mm": 20.0, "auc_20_50": 0.5, "name": name, **kwargs,
                  "requested_examples": requested, "full_split": requested == -1}
        with open(os.path.join(out_dir, "metrics.json"), "w") as f:
            json.dump(result, f)
        return result


def test_steps_whose_inputs_changed_are_redone_with_everything_after_them(
        tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "write_report", lambda *args: None)
    fake = _FakeSteps(monkeypatch)
    out = str(tmp_path / "demo")
    everything = ["generate", "build", "train S1", "train S4", "evaluate S1", "evaluate S4"]

    def run(**changes):
        fake.ran.clear()
        args = {"num_train": 8, "num_eval": 4, "steps": 3, **changes}
        return demo.run_demo(out, **args)

    run()
    assert fake.ran == everything
    run()
    assert fake.ran == []  # same inputs: nothing redone

    def runs_in_s1_workdir():
        with open(os.path.join(out, "workdirs", "S1_R2P", "runs")) as f:
            return len(f.readlines())

    run(steps=5)  # more steps: training resumes (same work directory), evaluation redone
    assert fake.ran == ["train S1", "train S4", "evaluate S1", "evaluate S4"]
    assert runs_in_s1_workdir() == 2
    result = run(steps=5, num_train=16)  # new data: every step, models trained afresh
    assert fake.ran == everything and runs_in_s1_workdir() == 1
    assert result["results"]["S1 (R2P)"]["num_examples"] == -1
    run(steps=5, num_train=16, eval_examples=2)  # only the evaluation's input changed
    assert fake.ran == ["evaluate S1", "evaluate S4"]
    run(steps=2, num_train=16, eval_examples=2)  # fewer steps: retrain from scratch
    assert fake.ran[:2] == ["train S1", "train S4"] and runs_in_s1_workdir() == 1
    with open(os.path.join(out, demo.STEPS_FILE)) as f:
        assert json.load(f)["generate"] == {"num_train": 16, "num_eval": 4, "seed": 0}


def test_steps_run_from_the_project_root_whatever_the_working_directory(tmp_path,
                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = ("import os, experiments; "
              "assert os.path.dirname(os.path.dirname(experiments.__file__)) == os.getcwd()")
    demo._run([sys.executable, "-c", script], "check")
    assert os.path.isabs(demo.DEMO_CONFIG) and os.path.exists(demo.DEMO_CONFIG)


def test_benchmark_section_quotes_the_committed_rows_and_the_cpu_scale(tmp_path):
    entry = {"num_seeds": 2, "mean_epe_mm": 32.39, "median_epe_mm": 30.29, "auc_20_50": 0.598}
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"commit": "abc1234", "table1": {
        "R2P": entry, "RC2CHP_poe": {**entry, "mean_epe_mm": 30.14}, "R2HP": entry}}))
    text = "\n".join(demo.benchmark_section({"steps": 7, "num_train": 99}, str(results)))
    assert "| benchmark S1 (R2P), 2 seed(s) | 32.39 | 30.29 | 0.598 |" in text
    assert "| benchmark S4 (RC2CHP_poe), 2 seed(s) | 30.14 |" in text
    assert "R2HP" not in text                        # only the demo's two strategies
    assert "7 steps on the demo's 99 generated frames instead of 4,000 steps" in text
    assert "64² crops, ResNet-18 of width 16" in text and "commit abc1234" in text


def test_benchmark_section_says_when_there_is_nothing_to_compare_with(tmp_path):
    lines = demo.benchmark_section({"steps": 7, "num_train": 99}, str(tmp_path / "none.json"))
    assert lines[0].startswith("## How the demo relates to the benchmark")
    assert "No benchmark results to compare with" in lines[1] and "none.json" in lines[1]


# --- Safety (issue 24): --force keeps the user's files; only the demo's evaluations count ----

def test_force_deletes_only_the_demos_own_entries_and_names_the_kept_ones(tmp_path, capsys):
    out = tmp_path / "demo"
    demo.prepare_out(str(out), force=False)
    (out / "report.md").write_text("earlier results")
    (out / "workdirs" / "S1_R2P").mkdir(parents=True)
    (out / "predict").mkdir()  # where the README writes predictions
    (out / "predict" / "00000.json").write_text("the user's prediction")
    (out / "notes.txt").write_text("precious")
    demo.prepare_out(str(out), force=True)
    assert sorted(os.listdir(out)) == [demo.DEMO_MARKER, "notes.txt", "predict"]
    assert (out / "predict" / "00000.json").read_text() == "the user's prediction"
    assert "kept notes.txt, predict" in capsys.readouterr().out


def test_an_evaluation_the_demo_did_not_ask_for_is_redone_not_reported(tmp_path,
                                                                       monkeypatch):
    monkeypatch.setattr(demo, "write_report", lambda *args: None)
    fake = _FakeSteps(monkeypatch)
    out = str(tmp_path / "demo")
    args = {"num_train": 8, "num_eval": 4, "steps": 3}
    demo.run_demo(out, **args)
    # `python -m experiments.evaluate --split test --num_examples 4 --out <the demo's folder>`
    # (before this fix, the default --out) over S1's full-split evaluation:
    s1 = os.path.join(out, "workdirs", "S1_R2P")
    with open(os.path.join(demo.eval_dir(s1), "metrics.json"), "w") as f:
        json.dump({"mean_epe_mm": 99.0, "auc_20_50": 0.1, "num_examples": 4,
                   "requested_examples": 4, "full_split": False}, f)
    fake.ran.clear()
    result = demo.run_demo(out, **args)
    assert fake.ran == ["evaluate S1"]
    assert result["results"]["S1 (R2P)"]["mean_epe_mm"] == 20.0
    assert demo.read_evaluation(s1, 4) is None and demo.read_evaluation(s1) is not None


def test_the_report_says_over_how_many_frames_its_rows_are(tmp_path):
    rng = np.random.default_rng(0)
    results = {"S1 (R2P)": metrics.summarize_errors(rng.gamma(2.0, 12.0, (4, 21)))}
    info = {"num_train": 8, "num_eval": 8, "steps": 3, "seed": 0, "cpu_count": 2}
    text = open(demo.write_report(str(tmp_path), results, {}, {},
                                  {**info, "eval_examples": 4})).read()
    assert "Only the first 4 test frames were evaluated" in text and "N = 4" in text
    text = open(demo.write_report(str(tmp_path), results, {}, {}, info)).read()
    assert "Every row is over the whole test split (N = 4)" in text


@pytest.mark.slow
def test_tiny_demo_end_to_end_and_resume(tmp_path):
    """`python -m experiments.demo --tiny`: every step for real, at smoke sizes, then a resume."""
    out = tmp_path / "demo"
    args = {"num_train": 40, "num_eval": 8, "steps": 2, "tiny": True}
    result = demo.run_demo(str(out), **args)
    assert set(result["results"]) == {"S1 (R2P)", "S4 (RC2CHP_poe)"}
    assert all(np.isfinite(m["mean_epe_mm"]) for m in result["results"].values())
    assert {"report.md", "pck.png", "figures", "timings.json", "steps.json", "data",
            "workdirs", demo.DEMO_MARKER} <= set(os.listdir(out))
    assert "Every row is over the whole test split (N = 8)" in (out / "report.md").read_text()
    again = demo.run_demo(str(out), **args)
    assert all("earlier run" in str(again["timings"][key]) for key in
               ("generate_s", "build_s", "train_S1_s", "train_S4_s", "evaluate_S1_s"))
