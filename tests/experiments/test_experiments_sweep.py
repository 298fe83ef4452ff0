"""Grid sweeps: expansion, typed overrides, printed commands and a real 2×2 sweep."""

import csv
import functools
import os
import sys

import pytest

from experiments import sweep

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "training"))
import training_standins as standins  # noqa: E402
from handvae.training import loop  # noqa: E402

SPECS = ["loss.beta_max=1e-3,1e-2", "loss.lambda_cloud=0.5,2"]


def test_grid_is_the_product_last_varying_fastest():
    grid = sweep.expand_grid(SPECS + ["seed=0,1,2"])
    assert len(grid) == 12
    assert grid[0] == {"loss.beta_max": "1e-3", "loss.lambda_cloud": "0.5", "seed": "0"}
    assert grid[1]["seed"] == "1"
    assert sweep.run_name(grid[0]) == "loss.beta_max=1e-3_loss.lambda_cloud=0.5_seed=0"


def test_assignment_converts_to_field_types_and_rejects_typos():
    config = standins.tiny_config()
    changed = sweep.apply_assignment(config, {"loss.beta_max": "1e-2", "seed": "3",
                                             "data.augment": "false"})
    assert changed.loss.beta_max == 0.01 and changed.seed == 3
    assert changed.data.augment is False
    assert config.loss.beta_max == 1e-3  # the base config is untouched
    with pytest.raises(ValueError, match="loss.beta_mx: no such config field"):
        sweep.apply_assignment(config, {"loss.beta_mx": "1"})
    with pytest.raises(ValueError, match="not an integer"):
        sweep.apply_assignment(config, {"seed": "0.5"})
    with pytest.raises(ValueError, match="expected 'field=value1,value2"):
        sweep.parse_sweep("loss.beta_max")


def test_print_only_prints_one_train_command_per_run(tmp_path, capsys):
    rows = sweep.run_sweep(standins.tiny_config(), str(tmp_path), SPECS, print_only=True,
                           config_arg="experiments/configs/s4_poe.py:dataset=rhd",
                           overrides={"num_train_steps": 10})
    lines = capsys.readouterr().out.strip().splitlines()
    assert rows == [] and len(lines) == 4 and not os.listdir(tmp_path)
    assert lines[0].startswith("python -m experiments.train "
                               "--config=experiments/configs/s4_poe.py:dataset=rhd")
    assert "--config.num_train_steps=10" in lines[0]
    assert "--config.loss.beta_max=1e-3 --config.loss.lambda_cloud=0.5" in lines[0]
    assert f"--workdir={tmp_path}/loss.beta_max=1e-2_loss.lambda_cloud=2" in lines[3]


def test_two_by_two_sweep_trains_four_runs_and_gathers_a_table(tmp_path):
    config = standins.tiny_config()
    config.num_train_steps, config.eval_every, config.checkpoint_every = 2, 2, 2
    train_fn = functools.partial(loop.train_and_evaluate, batches=standins.batches(config),
                                 eval_batches=standins.eval_batches(config),
                                 functions=standins.FUNCTIONS)
    rows = sweep.run_sweep(config, str(tmp_path), SPECS, train_fn=train_fn)
    assert [r["status"] for r in rows] == ["ok"] * 4
    for row in rows:
        saved = checkpoint_config(tmp_path / row["name"])
        assert saved.loss.beta_max == float(row["loss.beta_max"])
        assert saved.loss.lambda_cloud == float(row["loss.lambda_cloud"])
    with open(tmp_path / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 and all(float(r["mean_epe_mm"]) > 0 for r in table)
    assert {r["loss.lambda_cloud"] for r in table} == {"0.5", "2"}
    markdown = (tmp_path / "sweep.md").read_text().splitlines()
    assert markdown[0].startswith("| name | loss.beta_max | loss.lambda_cloud | status |")
    assert len(markdown) == 2 + 4
    # lambda_cloud scales the stand-in's pose term, so the runs really differ.
    assert len({r["train_loss"] for r in table}) == 4


def checkpoint_config(workdir):
    from handvae.training import checkpoint
    return checkpoint.read_config(str(workdir))


def test_a_bad_value_names_the_field():
    config = standins.tiny_config()
    for key, text in (("loss.beta_max", "abc"), ("seed", "1e999"), ("seed", "x")):
        with pytest.raises(ValueError, match=f"--sweep {key}: '{text}'"):
            sweep.apply_assignment(config, {key: text})


def test_a_failed_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    def train_fn(config, workdir):
        if config.seed == 1:
            raise TypeError("unsupported operand type(s) for *: 'NoneType' and 'float'")
        if config.seed == 2:
            raise RuntimeError("XLA out of memory")
        return {"mean_epe_mm": 10.0 + config.seed, "step": 2.0}

    rows = sweep.run_sweep(standins.tiny_config(), str(tmp_path), ["seed=0,1,2,3"],
                           train_fn=train_fn)
    assert [r["status"] for r in rows] == [
        "ok", "failed: TypeError: unsupported operand type(s) for *: 'NoneType' and 'float'",
        "failed: RuntimeError: XLA out of memory", "ok"]
    with open(tmp_path / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["mean_epe_mm"] for r in table] == ["10.0", "", "", "13.0"]
    assert "failed: RuntimeError: XLA out of memory" in (tmp_path / "sweep.md").read_text()


def _population_fn(configs, workdirs, popdir):
    from handvae.training import population_loop
    return population_loop.train_population(
        configs, workdirs, popdir, batches=[standins.batches(c) for c in configs],
        eval_batches=standins.eval_batches(configs[0]), functions=standins.FUNCTIONS)


def test_a_population_sweep_gives_the_sequential_sweeps_table(tmp_path, capsys):
    """--population=vmap against off on a 2 × 2 grid over β_max and a non-population field
    (the stand-in's width): two populations of two, the same rows to float tolerance."""
    config = standins.tiny_config()
    config.num_train_steps, config.eval_every, config.checkpoint_every = 3, 3, 3
    specs = ["model.resnet_width=4,6", "loss.beta_max=1e-3,1e-1"]
    train_fn = functools.partial(loop.train_and_evaluate, batches=standins.batches(config),
                                 eval_batches=standins.eval_batches(config),
                                 functions=standins.FUNCTIONS)
    tables = {}
    for mode in ("off", "vmap"):
        sweep.run_sweep(config, str(tmp_path / mode), specs, train_fn=train_fn,
                        population_mode=mode, population_fn=_population_fn)
        with open(tmp_path / mode / "sweep.csv") as f:
            tables[mode] = list(csv.DictReader(f))
    assert "population of 2: model.resnet_width=4_loss.beta_max=1e-3" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / "vmap" / "populations")) == [
        "model.resnet_width=4", "model.resnet_width=6"]
    assert [r["name"] for r in tables["off"]] == [r["name"] for r in tables["vmap"]]
    assert list(tables["off"][0]) == list(tables["vmap"][0])
    for off, vmap in zip(tables["off"], tables["vmap"]):
        assert off["status"] == vmap["status"] == "ok"
        for column in ("mean_epe_mm", "train_loss", "step"):
            assert float(vmap[column]) == pytest.approx(float(off[column]), rel=1e-5)


def test_auto_is_sequential_unless_a_measurement_of_this_device_kind_shows_a_gain(tmp_path):
    figure = {"device_kind": "cpu", "cases": [
        {"strategy": "R2P", "shared_batch": True,
         "member_steps_per_s_ratio": {"1": 1.0, "2": 0.78, "4": 0.75}},
        {"strategy": "R2P", "shared_batch": False,
         "member_steps_per_s_ratio": {"1": 1.0, "2": 0.5}}]}
    (tmp_path / "cpu_x").mkdir()
    (tmp_path / "cpu_x" / "population.json").write_text(__import__("json").dumps(figure))
    mode, why = sweep.choose_population("auto", 4, shared_batch=True, device_kind="cpu",
                                        figures=str(tmp_path))
    assert mode == "off" and "0.75×" in why and "cpu_x/population.json" in why
    assert sweep.choose_population("auto", 3, shared_batch=True, device_kind="gpu-x",
                                   figures=str(tmp_path))[0] == "off"
    figure["cases"][0]["member_steps_per_s_ratio"]["4"] = 1.05   # within the margin
    (tmp_path / "cpu_x" / "population.json").write_text(__import__("json").dumps(figure))
    assert sweep.choose_population("auto", 4, shared_batch=True, device_kind="cpu",
                                   figures=str(tmp_path))[0] == "off"
    figure["cases"][0]["member_steps_per_s_ratio"]["4"] = 3.5
    (tmp_path / "cpu_x" / "population.json").write_text(__import__("json").dumps(figure))
    assert sweep.choose_population("auto", 8, shared_batch=True, device_kind="cpu",
                                   figures=str(tmp_path))[0] == "vmap"
    assert sweep.choose_population("vmap", 2, shared_batch=True)[0] == "vmap"
