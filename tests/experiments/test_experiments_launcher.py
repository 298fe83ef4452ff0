"""experiments.launcher: the child runner, the data policies, the executor seam, the records.

Training is not the point here: a stand-in trainer writes what ``experiments.train`` writes
(``metrics.jsonl`` validation rows, ``final_metrics.json`` with the final test).
"""

import ast
import json
import os
import subprocess
import sys

import pytest

from experiments import launcher, launcher_data, launcher_folders, launcher_records, reproduce

EXPERIMENTS = os.path.join(launcher.REPO, "experiments")


def _fake_training(workdir, steps=4, best=30.0):
    """What a finished trainer leaves in ``workdir`` (validation curve, final test)."""
    os.makedirs(workdir, exist_ok=True)
    rows = [{"step": 2, "split": "validation", "mean_epe_mm": best + 5},
            {"step": 4, "split": "validation", "mean_epe_mm": best}]
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    with open(os.path.join(workdir, "final_metrics.json"), "w") as f:
        json.dump({"step": steps, "test": {"mean_epe_mm": best - 1, "checkpoint_step": 4}}, f)


class _FakeCall:
    """Stands in for :func:`launcher.call`: records commands, fakes what each writes."""

    def __init__(self, monkeypatch):
        self.commands: list[tuple[str, list[str], str | None]] = []
        monkeypatch.setattr(launcher, "call", self)
        monkeypatch.setattr(launcher, "missing_modules", lambda stage: [])

    def __call__(self, cmd, what, log_path=None, *, echo=False):
        self.commands.append((what, list(cmd), log_path))
        if cmd[2] == "experiments.train":
            _fake_training(cmd[cmd.index("--workdir") + 1])
        return 2.0

    @property
    def steps(self):
        return [what for what, _, _ in self.commands]


# --- the child runner ----------------------------------------------------------------------

def test_call_runs_from_the_repository_and_names_the_failed_step(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = ("import os, experiments; "
              "assert os.path.dirname(os.path.dirname(experiments.__file__)) == os.getcwd()")
    assert launcher.call([sys.executable, "-c", script], "check") >= 0
    log = tmp_path / "child.log"
    with pytest.raises(launcher.StepFailed, match=r"'train R2P' failed \(exit 3\) \(log: .*"
                                                  r"child.log\); rerun it alone"):
        launcher.call([sys.executable, "-c", "print('hello'); raise SystemExit(3)"],
                      "train R2P", str(log))
    assert log.read_text() == "hello\n"
    assert not launcher._subprocesses._children


def test_an_unknown_executor_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match=r"executor 'vmap' is unknown; choose one of "
                                         r"\['population', 'sequential'\]"):
        launcher.executor("vmap")


# --- data -----------------------------------------------------------------------------------

def test_data_commands_generate_once_then_build_each_config():
    data = launcher_data.DataSpec(12, 4, 7)
    steps = launcher_data.data_commands(data, "/raw", "/tfds", ("synthetic", "synthetic_plain"))
    assert [what for what, _ in steps] == ["generate", "build synthetic",
                                          "build synthetic_plain"]
    generate = steps[0][1]
    assert generate[1:3] == ["-m", "data_prep.synthetic"]
    assert generate[generate.index("--num-train") + 1] == "12"
    assert generate[generate.index("--seed") + 1] == "7"
    assert steps[2][1][-6:] == ["--config", "synthetic_plain", "--manual_dir", "/raw",
                                "--data_dir", "/tfds"]


def test_shared_data_is_made_once_reused_as_recorded_and_other_sizes_refused(tmp_path,
                                                                             monkeypatch):
    fake = _FakeCall(monkeypatch)
    folder = tmp_path / "bench"
    folder.mkdir()
    # benchmark.json as reproduce wrote it before the launcher: reused, nothing run.
    (folder / "benchmark.json").write_text(json.dumps(
        {"setting": {"num_train": 12, "num_eval": 4, "seed": 0}, "generate_s": 5.0,
         "build_synthetic_s": 3.0}))
    done = launcher_data.prepare_shared_data(str(folder), launcher_data.DataSpec(12, 4, 0))
    assert fake.steps == [] and done["tfds_dir"] == str(folder / "tfds")
    done = launcher_data.prepare_shared_data(str(folder), launcher_data.DataSpec(12, 4, 0),
                                        ("synthetic", "synthetic_plain"))
    assert fake.steps == ["build synthetic_plain"] and done["build_synthetic_plain_s"] == 2.0
    saved = json.loads((folder / "benchmark.json").read_text())
    assert saved["build_synthetic_plain_s"] == 2.0 and "tfds_dir" not in saved
    with pytest.raises(RuntimeError, match="generated with .*'num_train': 12.*another "
                                           "--data-root"):
        launcher_data.prepare_shared_data(str(folder), launcher_data.DataSpec(99, 4, 0))
    assert (folder / "benchmark.json").exists()  # a shared folder: nothing deleted


# --- records ------------------------------------------------------------------------------

def _runs(tmp_path, seeds=(0, 1)):
    return [launcher.RunSpec(name=f"R2P_seed{s}", workdir=str(tmp_path / f"R2P_seed{s}"),
                             config=f"experiments/configs/reproduce.py:strategy=R2P,seed={s}",
                             seed=s) for s in seeds]


def test_the_population_executor_trains_each_group_in_one_child(tmp_path, monkeypatch):
    fake = _FakeCall(monkeypatch)

    def population_child(cmd, what, log_path=None, *, echo=False):
        if cmd[2] == "experiments.launcher_population":
            fake.commands.append((what, list(cmd), log_path))
            for i, arg in enumerate(cmd):
                if arg == "--workdir":
                    _fake_training(cmd[i + 1])
            return 5.0
        return fake(cmd, what, log_path)

    monkeypatch.setattr(launcher, "call", population_child)
    runs = [run._replace(group="R2P") for run in _runs(tmp_path, seeds=(0, 1))]
    runs.append(_runs(tmp_path, seeds=(2,))[0]._replace(name="alone", group="R2HP"))
    records = launcher.train_recorded(runs, "/tfds", identity=_identity, record_file="run.json",
                                      log_file="train.log", how="population")
    whats = [what for what, _, _ in fake.commands]
    assert whats == ["train population R2P (2 runs)", "train alone"]
    _, cmd, log_path = fake.commands[0]
    popdir = str(tmp_path / "populations" / "R2P")
    assert cmd[cmd.index("--popdir") + 1] == popdir == launcher.population_dir(runs[0])
    assert log_path == os.path.join(popdir, "train.log")
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "--config"] == [
        runs[0].config, runs[1].config]
    assert [r["train_s"] for r in records] == [5.0, 5.0, 2.0]


def _identity(run):
    return {"name": run.name, "config": run.config}


def test_train_recorded_records_each_run_and_skips_finished_ones(tmp_path, monkeypatch):
    fake = _FakeCall(monkeypatch)
    runs = _runs(tmp_path)
    records = launcher.train_recorded(runs, "/tfds", identity=_identity, record_file="run.json",
                                      fields=lambda run: {"seed": run.seed},
                                      log_file="train.log")
    assert fake.steps == ["train R2P_seed0", "train R2P_seed1"]
    _, cmd, log_path = fake.commands[0]
    assert cmd[cmd.index("--config") + 1] == runs[0].config
    assert "--config.data.data_dir=/tfds" in cmd
    assert log_path == os.path.join(runs[0].workdir, "train.log")
    assert [r["seed"] for r in records] == [0, 1]
    record = records[0]
    assert record["train_s"] == 2.0 and record["test"]["mean_epe_mm"] == 29.0
    assert record["validation"]["best_step"] == 4
    assert json.load(open(os.path.join(runs[0].workdir, "run.json"))) == record

    fake.commands.clear()
    again = launcher.train_recorded(runs[::-1], "/tfds", identity=_identity,
                                    record_file="run.json")
    assert fake.steps == [] and [r["name"] for r in again] == ["R2P_seed1", "R2P_seed0"]
    assert all(r["skipped"] for r in again)
    changed = [runs[0]._replace(config=runs[0].config + ",lr=1e-4"), runs[1]]
    launcher.train_recorded(changed, "/tfds", identity=_identity, record_file="run.json")
    assert fake.steps == ["train R2P_seed0"]  # another identity: trained again


def test_a_population_executor_plugs_in_with_the_same_records(tmp_path, monkeypatch):
    """The seam for item 1's population trainer: one call trains every pending run."""
    calls = []

    def population(runs, data_dir, *, before, after, log_file=None):
        calls.append([run.name for run in runs])
        for run in runs:
            before(run)
            _fake_training(run.workdir, best=20.0 + run.seed)
        for run in runs:
            after(run, 10.0)

    monkeypatch.setitem(launcher.EXECUTORS, "population", population)
    runs = _runs(tmp_path, seeds=(0, 1, 2))
    _fake_training(runs[1].workdir)
    launcher_records.write_run_record(runs[1].workdir, "run.json", _identity(runs[1]), 1.0)
    records = launcher.train_recorded(runs, "/tfds", identity=_identity,
                                      record_file="run.json", how="population")
    assert calls == [["R2P_seed0", "R2P_seed2"]]  # the finished run is not retrained
    assert [r["test"]["mean_epe_mm"] for r in records] == [19.0, 29.0, 21.0]
    assert [r.get("skipped", False) for r in records] == [False, True, False]


def test_validation_curve_and_test_metrics_read_the_trainers_files(tmp_path):
    assert launcher_records.validation_curve(str(tmp_path))["best_step"] is None
    with pytest.raises(FileNotFoundError, match="final_metrics.json.*has not finished"):
        launcher_records.read_test_metrics(str(tmp_path))
    _fake_training(str(tmp_path))
    curve = launcher_records.validation_curve(str(tmp_path))
    assert curve == {"steps": [2, 4], "mean_epe_mm": [35.0, 30.0], "best_step": 4,
                     "best_mean_epe_mm": 30.0}
    assert launcher_records.read_test_metrics(str(tmp_path))["checkpoint_step"] == 4
    assert launcher_records.trained(str(tmp_path), 4)
    assert not launcher_records.trained(str(tmp_path), 5)


def test_ledger_forgets_a_step_being_redone_and_survives_a_damaged_file(tmp_path):
    ledger = launcher_records.Ledger(str(tmp_path))
    ledger.finish("generate", {"num_train": 8})
    ledger.finish("build", {"data": {"num_train": 8}})
    ledger.start("build")
    again = launcher_records.Ledger(str(tmp_path))
    assert again.done("generate", {"num_train": 8}) and again.recorded("build") is None
    assert not again.done("generate", {"num_train": 9})
    (tmp_path / "steps.json").write_text("{half")
    assert launcher_records.Ledger(str(tmp_path)).steps == {}


def test_report_pieces_timings_and_provenance(tmp_path):
    table = launcher_records.timings_table({"generate_s": 12.4, "build_s": "81 s (earlier run)"})
    assert "| generate | 12 s |" in table and "| build | 81 s (earlier run) |" in table
    info = launcher.provenance()
    assert info["commit"] and info["machine"]["cpu_count"] == os.cpu_count()


# --- owned folders and runs -----------------------------------------------------------------

def test_owned_runs_resume_with_more_steps_and_restart_on_other_inputs(tmp_path, monkeypatch):
    fake = _FakeCall(monkeypatch)
    ledger = launcher_records.Ledger(str(tmp_path))

    def train(steps, strategy="R2P"):
        fake.commands.clear()
        run = launcher.RunSpec(name="S1 (R2P)", label="S1", workdir=str(tmp_path / "S1"),
                               config=f"demo.py:steps={steps}", steps=steps,
                               inputs={"strategy": strategy})
        launcher.train_owned([run], {"data": 1}, "/tfds", ledger, {}, lambda *a: None)
        (tmp_path / "S1" / "marker").touch()
        return fake.steps

    assert train(4) == ["train S1"]
    assert train(4) == []
    os.remove(tmp_path / "S1" / "marker")
    assert train(6) == ["train S1"] and (tmp_path / "S1" / "marker").exists() is True
    os.remove(tmp_path / "S1" / "marker")
    (tmp_path / "S1" / "keep").touch()
    assert train(6, strategy="R2HP") == ["train S1"]
    assert not (tmp_path / "S1" / "keep").exists()  # other inputs: trained afresh


def test_integer_arguments_are_checked_with_the_flag_named():
    launcher_folders.check_integer("--eval-examples", -1, 1, also=(-1,))
    for value in (0, 1.5, True, "3"):
        with pytest.raises(launcher_folders.ArgumentError,
                           match=r"--eval-examples must be -1 or an integer ≥ 1"):
            launcher_folders.check_integer("--eval-examples", value, 1, also=(-1,))


# --- one launcher: reproduce goes through it; no import circle ------------------------------

def test_reproduce_runs_through_the_launcher_with_its_record_fields(tmp_path, monkeypatch):
    fake = _FakeCall(monkeypatch)
    runs = reproduce.plan_runs(["fig5"], [0], "tiny", strategies=["R2P"])
    assert [reproduce.run_spec(r, "/root").group for r in runs] == ["R2P", "R2P_vc=0"]
    records = reproduce.execute_runs(runs, str(tmp_path), "tiny", "/tfds")
    assert fake.steps == ["train R2P_seed0", "train R2P_vc=0_seed0"]
    _, cmd, log_path = fake.commands[1]
    assert cmd[cmd.index("--config") + 1] == ("experiments/configs/reproduce.py:strategy=R2P,"
                                               "scale=tiny,seed=0,view_correction=0")
    assert log_path == str(tmp_path / "runs" / "R2P_vc=0_seed0" / "reproduce.log")
    assert sorted(records[1]) == ["config_arg", "data_dir", "name", "scale", "seed", "test",
                                  "train_s", "validation", "view_correction"]
    assert records[1]["view_correction"] is False
    assert reproduce.finished_record(runs[1], str(tmp_path)) == records[1]
    assert reproduce.execute_run(runs[0], str(tmp_path), "tiny", "/tfds")["skipped"] is True


def _imports(module):
    tree = ast.parse(open(os.path.join(EXPERIMENTS, f"{module}.py")).read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_launcher_is_the_bottom_layer_of_the_presets():
    presets = {"experiments.demo", "experiments.reproduce", "experiments.sweep",
               "experiments.reproduce_report"}
    for module in ("launcher", "launcher_data", "launcher_evaluation", "launcher_records",
                   "launcher_folders", "launcher_population", "launcher_choice",
                   "reproduce_report"):
        assert not _imports(module) & presets, module
    # the launcher (through experiments._subprocesses) is the one that starts processes
    for module in ("demo", "reproduce", "reproduce_report", "launcher_data",
                   "launcher_evaluation", "launcher_records", "launcher_folders",
                   "launcher_population", "launcher_choice"):
        assert not _imports(module) & {"experiments._subprocesses", "subprocess"}, module
    assert "experiments._subprocesses" in _imports("launcher")


def test_run_each_records_a_failure_and_goes_on_but_stops_on_an_interrupt():
    results = []

    def run_one(seed):
        if seed == 1:
            raise RuntimeError("XLA out of memory")
        if seed == 3:
            raise KeyboardInterrupt
        return {"seed": seed}

    launcher.run_each([0, 1, 2], run_one, lambda item, result: results.append(result))
    assert results[0] == {"seed": 0} and results[2] == {"seed": 2}
    assert isinstance(results[1], RuntimeError) and results[1].__traceback__ is not None
    with pytest.raises(KeyboardInterrupt):
        launcher.run_each([3, 0], run_one, lambda item, result: results.append(result))
    assert len(results) == 3


# --- --population=auto|vmap|off: the launcher's measured rule -------------------------------

def _seed_plan(seeds=(0, 1)):
    """Reproduce's plan of R2P for ``seeds``: one group (the setting), one run per seed."""
    return [reproduce.run_spec(r, "/root")
            for r in reproduce.plan_runs(["table1"], list(seeds), "cpu", strategies=["R2P"])]


def _no_device():
    raise AssertionError("the device kind was asked for though the rule does not need it")


def test_auto_is_sequential_on_cpu_with_the_committed_figures():
    runs = _seed_plan()
    assert {run.group for run in runs} == {"R2P"}
    how, why = launcher.choose_executor("auto", runs, device_kind="cpu")
    # the seeds differ, so one batch per member: 0.47x one run at K = 2 (cpu_2026-12-07)
    assert how == "sequential"
    assert "auto: sequential" in why and "0.47×" in why
    assert "cpu_2026-12-07/population.json" in why
    assert launcher.choose_executor("auto", runs, device_kind="TPU v9")[0] == "sequential"


def test_auto_chooses_a_population_only_where_the_figures_measured_a_gain(tmp_path):
    def figure(ratio):
        (tmp_path / "gpu_x").mkdir(exist_ok=True)
        (tmp_path / "gpu_x" / "population.json").write_text(json.dumps(
            {"device_kind": "gpu-x", "cases": [
                {"strategy": "R2P", "shared_batch": False,
                 "member_steps_per_s_ratio": {"1": 1.0, "2": ratio}},
                {"strategy": "R2P", "shared_batch": True,
                 "member_steps_per_s_ratio": {"1": 1.0, "2": 0.2}}]}))

    figure(3.0)
    how, why = launcher.choose_executor("auto", _seed_plan(), device_kind=lambda: "gpu-x",
                                        figures=str(tmp_path))
    assert how == "population" and "3.00×" in why and "gpu_x/population.json" in why
    figure(1.05)  # within the margin
    assert launcher.choose_executor("auto", _seed_plan(), device_kind="gpu-x",
                                    figures=str(tmp_path))[0] == "sequential"
    # off and vmap are what they say, whatever was measured, and ask no device
    assert launcher.choose_executor("off", _seed_plan(), device_kind=_no_device) == (
        "sequential", "--population=off")
    assert launcher.choose_executor("vmap", _seed_plan(), device_kind=_no_device) == (
        "population", "--population=vmap")
    # one seed: nothing to vmap, sequential without asking the device
    how, why = launcher.choose_executor("auto", _seed_plan([0]), device_kind=_no_device)
    assert how == "sequential" and "no group of two or more" in why
    with pytest.raises(ValueError, match="--population"):
        launcher.choose_executor("population", _seed_plan())


def test_the_device_kind_is_read_by_a_child_without_loading_jax_here():
    code = ("import sys; from experiments import launcher; "
            "print(launcher.read_device_kind(), 'jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=launcher.REPO, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out == ["cpu", "False"]


def test_reproduce_population_flag_defaults_to_auto_and_prints_its_choice(tmp_path,
                                                                           monkeypatch,
                                                                           capsys):
    chosen = []
    monkeypatch.setattr(reproduce, "prepare_data", lambda *a, **k: {"tfds_dir": "/tfds"})
    monkeypatch.setattr(reproduce, "execute_runs",
                        lambda runs, root, scale, tfds_dir, how: chosen.append(how) or [])
    monkeypatch.setattr(reproduce.reproduce_report, "write_all",
                        lambda root, payload: ["results.json"])
    monkeypatch.setattr(launcher, "read_device_kind", lambda: "cpu")
    args = ["--root", str(tmp_path), "--targets", "table1", "--strategies", "R2P",
            "--seeds", "0,1"]
    assert reproduce.main(args) == 0
    out = capsys.readouterr().out
    assert chosen == ["sequential"]
    assert "training: sequential (auto: sequential, a population of 2 measured 0.47×" in out
    for flag, how in (("off", "sequential"), ("vmap", "population"), ("auto", "sequential")):
        assert reproduce.main([*args, "--population", flag]) == 0
        assert chosen[-1] == how and f"training: {how} (" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        reproduce.main([*args, "--population", "sometimes"])
