"""Every script under ``benchmarks/`` runs in its ``--smoke`` mode and writes its JSON (issue 28).

Each script runs as ``make bench`` runs it, as a subprocess, at tiny sizes, with ``--out`` in a
temporary folder; the test checks the fields of the JSON it writes, so an API change that
breaks a benchmark fails ``make test``. GPU-only branches get a CPU dry run: the Pallas auction
in its interpreter, and the paper-size steps lowered for CUDA (the Triton kernel included).
About 85 s of CPU; ``precision.py``, ``trainer_rate.py``, ``population.py`` (their own
``--smoke``), the dense auction and ``gpu.sh --dry-run`` (the GPU call's script, every part
shrunk) are ``slow`` (``make test-slow``, ``make bench-smoke``).
"""

import argparse
import datetime
import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
# XLA's CPU compiles are most of a smoke run, and its figures mean nothing: quick compiles.
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
TESTED = {"losses.py", "synthetic.py", "input_pipeline.py", "batch_transport.py",
          "model_step.py", "train_step.py", "build_full_size.py", "precision.py",
          "trainer_rate.py", "population.py"}


def run_benchmark(cwd: pathlib.Path, script: str, *args: str, **env_vars: str) -> str:
    """Runs ``benchmarks/<script> *args`` in ``cwd`` with ``env_vars`` added to the environment;
    returns its stdout, fails with its tail."""
    env = {**os.environ, **env_vars}   # conftest's two CPU devices, JAX_PLATFORMS=cpu included
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (
        f"benchmarks/{script} {' '.join(args)} exited {proc.returncode}\n"
        f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}")
    return proc.stdout


def read_json(path: pathlib.Path) -> dict:
    assert path.exists(), f"{path} was not written"
    return json.loads(path.read_text())


def has_fields(record: dict, fields: str) -> None:
    missing = set(fields.split()) - set(record)
    assert not missing, f"missing {sorted(missing)} in {sorted(record)}"


def test_every_benchmark_script_has_a_smoke_test():
    scripts = {p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_")}
    assert scripts <= TESTED, (
        f"benchmarks without a smoke test: {sorted(scripts - TESTED)}; give each a --smoke "
        f"mode (benchmarks/_bench.py), a test here that runs it and checks its JSON, and its "
        f"name in TESTED")


@pytest.mark.parametrize("variant", [None, "pallas"])
def test_losses(tmp_path, variant):
    # None: the CPU default ("pooled") timed, and the GPU default (the Pallas kernel for
    # Triton) lowered for CUDA; "pallas": the kernel itself runs, in Pallas' interpreter.
    out = tmp_path / "losses.json"
    stdout = run_benchmark(tmp_path, "losses.py", "--smoke", "--out", str(out),
                           *(["--variant", variant] if variant else []))
    assert "scipy/auc" in stdout and "lowered for cuda" in stdout
    result = read_json(out)
    has_fields(result, "auction units chamfer lowered repeats jax device backend load_average_1min")
    assert [row["clouds"] for row in result["auction"]] == ["uniform", "hand"]
    for row in result["auction"]:
        has_fields(row, "batch points variant auction_s scipy_s speed_ratio_scipy_over_auction "
                        "mean_relative_gap max_relative_gap all_converged rounds mean_emd")
        assert row["variant"] == (variant or "pooled")
        assert row["all_converged"] and row["max_relative_gap"] < 1e-2
    assert set(result["units"]) == {"m", "dm", "mm"}
    has_fields(result["chamfer"], "chamfer_forward_s chamfer_forward_backward_s")
    (lowered,) = result["lowered"]
    assert lowered["platform"] == "cuda" and lowered["variant"] == "pallas"
    assert lowered["triton_kernels"] >= 1


@pytest.mark.slow
def test_losses_dense(tmp_path):
    out = tmp_path / "losses.json"
    run_benchmark(tmp_path, "losses.py", "--smoke", "--variant", "dense", "--out", str(out))
    assert all(row["variant"] == "dense" and row["all_converged"]
               for row in read_json(out)["auction"])


def test_synthetic(tmp_path):
    run_benchmark(tmp_path, "synthetic.py", "--smoke", "--out", str(tmp_path))
    result = read_json(tmp_path / "benchmarks" / "synthetic.json")
    has_fields(result, "num_train num_eval workers cpu_count formats")
    assert set(result["formats"]) == {"rhd", "stb"}
    for figures in result["formats"].values():
        has_fields(figures, "frames image_size wall_seconds images_per_second_wall "
                            "cpu_seconds_per_frame images_per_second_on_idle_cores")
    samples = {p.name.split("_")[0] for p in (tmp_path / "synthetic_samples").glob("*.png")}
    assert samples == {"rhd", "stb"}


def test_input_pipeline(tmp_path, rhd_synthetic_data_dir):
    out = tmp_path / "input_pipeline.json"
    run_benchmark(tmp_path, "input_pipeline.py", "--smoke", "--data_dir",
                  rhd_synthetic_data_dir, "--out", str(out))
    result = read_json(out)
    has_fields(result, "cpu_count load_average augment strategies")
    has_fields(result["strategies"]["R2P"],
               "keys batch_size image_size train_examples pipeline_examples_per_s "
               "pipeline_examples_per_s_warm step_examples_per_s steps data_wait_fraction "
               "data_wait_fraction_after_first_epoch loop_steps_per_s load_average_1min")


def test_batch_transport(tmp_path):
    out = tmp_path / "batch_transport.json"
    stdout = run_benchmark(tmp_path, "batch_transport.py", "--smoke", "--out", str(out))
    assert "spool / pipe" in stdout
    result = read_json(out)
    has_fields(result, "cpu_count load_average workers batch_mb spool_root pipe spool "
                       "spool_vs_pipe")
    for name in ("pipe", "spool"):
        has_fields(result[name], "batches_per_s gb_per_s")


def test_model_step(tmp_path):
    out = tmp_path / "model_step.json"
    run_benchmark(tmp_path, "model_step.py", "--smoke", "--out", str(out))
    (run,) = read_json(out)["runs"]
    assert run["settings"]["image_size"] == 32
    has_fields(run["results"]["R2P"], "compile_s step_s step_s_all loss params "
                                      "step_ratio_to_R2P device load_average_1min")


def test_model_step_lowered_for_cuda_at_paper_size(tmp_path):
    # The paper-size step as a GPU traces it (the Pallas auction for Triton), not compiled.
    out = tmp_path / "model_step.json"
    run_benchmark(tmp_path, "model_step.py", "--lower_for", "cuda", "--strategies",
                  "RC2CHP_poe", "--out", str(out))
    (run,) = read_json(out)["runs"]
    assert run["settings"]["image_size"] == 256 and run["settings"]["batch_size"] == 32
    figures = run["results"]["RC2CHP_poe"]
    assert figures["lowered_for"] == "cuda" and figures["triton_kernels"] >= 1
    assert figures["model_flops"] > 1e11 and sum(figures["params"].values()) > 1e7


def test_train_step(tmp_path, rhd_synthetic_data_dir):
    out = tmp_path / "train_step.json"
    # The pipeline rate reads the demo config's data_dir, that is $HANDVAE_DATA_DIR here
    # (else the script would build the dummy set into a temporary folder of its own).
    stdout = run_benchmark(tmp_path, "train_step.py", "--smoke", "--out", str(out),
                           HANDVAE_DATA_DIR=rhd_synthetic_data_dir)
    assert "paper_RC2CHP_poe_default was not timed; it does" in stdout
    result = read_json(out)
    has_fields(result, "platform cpu_count devices jax matmul demo_s4 paper_R2P "
                       "paper_RC2CHP_poe_default pipeline_demo")
    has_fields(result["matmul"], "n seconds flops_per_sec")
    has_fields(result["demo_s4"], "strategy compile_seconds step_seconds_median steps_per_sec "
                                  "examples_per_sec step_flops achieved_flops_per_sec "
                                  "model_flops fraction_of_matmul_flops final_loss")
    for name in ("paper_R2P", "paper_RC2CHP_poe_default"):
        figures = result[name]
        assert figures["image_size"] == 256 and figures["batch_size"] == 32
        assert figures["lowered_for"] == "cuda" and figures["model_flops"] > 1e11
    assert result["paper_R2P"]["triton_kernels"] == 0
    assert result["paper_RC2CHP_poe_default"]["triton_kernels"] >= 1   # GPU default: Pallas
    assert result["paper_RC2CHP_poe_default"]["flops_vs_R2P"] > 1
    has_fields(result["pipeline_demo"], "examples_per_sec step_consumes_examples_per_sec "
                                        "headroom")
    assert result["pipeline_demo"]["data"] == rhd_synthetic_data_dir


def test_build_full_size(tmp_path):
    run_benchmark(tmp_path, "build_full_size.py", "--smoke", "--tmp", str(tmp_path),
                  "--out", str(tmp_path))
    result = read_json(tmp_path / "build_full_size.json")
    assert result["tensorflow_imported"] is False
    for name in ("rhd", "stb"):
        figures = result["formats"][name]
        has_fields(figures, "frames stored examples_read_back generate_s build_s "
                            "build_examples_per_s peak_rss_build_tree_mib built_disk_mib "
                            "bytes_per_example extrapolated_full_size")
        assert figures["examples_read_back"] == sum(figures["stored"].values())


# Each ~20 s of CPU more (two tiny steps compiled): beyond make test's budget for this file.
@pytest.mark.slow
def test_precision(tmp_path):
    out = tmp_path / "precision.json"
    run_benchmark(tmp_path, "precision.py", "--smoke", "--out", str(out))
    result = read_json(out)
    has_fields(result, "device_kind devices jax scale load_average strategies")
    (record,) = result["strategies"]
    has_fields(record, "strategy batch_size image_size float32 bfloat16 bf16_vs_f32")
    for dtype in ("float32", "bfloat16"):
        has_fields(record[dtype], "step_seconds_median steps_per_sec compile_seconds final_loss")


@pytest.mark.slow
def test_trainer_rate(tmp_path, rhd_synthetic_data_dir):
    out = tmp_path / "trainer_rate.json"
    run_benchmark(tmp_path, "trainer_rate.py", "--smoke", "--data_dir", rhd_synthetic_data_dir,
                  "--cache_dir", str(tmp_path / "cache"), "--out", str(out))
    result = read_json(out)
    has_fields(result, "records decoded_vs_host_trainer_rate full_size_cache cpu_count")
    assert {record["pipeline"] for record in result["records"]} == {"host", "decoded_cache",
                                                                   "device"}
    assert set(result["device_vs_host_trainer_rate"]) == {"R2P"}
    for record in result["records"]:
        has_fields(record, "strategy pipeline trainer_steps_per_s step_only_steps_per_s "
                           "data_wait_fraction trainer_vs_step_only host_peak_rss_bytes")


@pytest.mark.slow
def test_population(tmp_path):
    # Five tiny steps compiled (the one run, K = 1 and 2, shared and per-member batches).
    run_benchmark(tmp_path, "population.py", "--smoke", "--out", str(tmp_path))
    result = read_json(tmp_path / "population.json")
    has_fields(result, "device_kind backend devices timed_steps rounds cases")
    assert len(result["cases"]) == 2          # shared and per-member batches
    for case in result["cases"]:
        has_fields(case, "one_run_steps_per_s member_steps_per_s member_steps_per_s_ratio "
                         "compile_seconds mesh")
        assert set(case["member_steps_per_s_ratio"]) == {"1", "2"}


# The GPU call's script on this CPU: each part's command line with the flags that shrink it
# appended (benchmarks/gpu.sh's header). ~3-4 min of CPU on the shared 2-core machine.
GPU_PARTS = {"population": "population.json", "trainer_rate_R2P": "trainer_rate_R2P.json",
             "losses": "losses.json", "train_step": "train_step.json",
             "losses_dense": "losses_dense.json"}


@pytest.mark.slow
def test_gpu_script_dry_run(tmp_path):
    out = tmp_path / "gpu"
    env = {**os.environ, "PYTHON": sys.executable}   # conftest's CPU devices included
    proc = subprocess.run(["bash", str(BENCHMARKS / "gpu.sh"), "--dry-run", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    lines = (out / "parts.txt").read_text().splitlines()
    exits = {m[1]: int(m[2]) for m in map(re.compile(r"^(\S+) exit (\d+) ").match, lines) if m}
    assert exits == {"trainer_data_generate": 0, "trainer_data_build": 0,
                     **{name: 0 for name in GPU_PARTS}}, "\n".join(lines)
    assert any(line.startswith("trainer_rate_S4 skipped in a dry run") for line in lines)
    for name, file in GPU_PARTS.items():
        assert (out / f"{name}.log").exists()
        read_json(out / file)
    population = read_json(out / "population.json")
    assert population["lowered_for"] == "cuda" and len(population["cases"]) == 4
    for case in population["cases"]:    # R2P and S4, shared and per-member batches, K = 2
        assert set(case["triton_kernels"]) == {"2"}
        assert (case["triton_kernels"]["2"] >= 1) == (case["strategy"] == "RC2CHP_poe")
    records = read_json(out / "trainer_rate_R2P.json")["records"]
    assert {r["pipeline"] for r in records} == {"host", "decoded_cache", "device"}
    lowered = read_json(out / "train_step.json")["paper_RC2CHP_poe_default"]
    assert lowered["lowered_for"] == "cuda" and lowered["triton_kernels"] >= 1


def _load_bench():
    spec = importlib.util.spec_from_file_location("_bench", BENCHMARKS / "_bench.py")
    _bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(_bench)
    return _bench


def test_smoke_defaults_yield_to_explicit_flags():
    _bench = _load_bench()
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--size", type=int, default=256)
    args = _bench.parse_args(parser, ["--smoke", "--size", "8"], {"steps": 2, "size": 4})
    assert (args.smoke, args.steps, args.size) == (True, 2, 8)
    assert _bench.parse_args(argparse.ArgumentParser(), [], {}).smoke is False


def test_write_figures_writes_to_out_or_to_the_dated_figures_folder(tmp_path, monkeypatch,
                                                                     capsys):
    _bench = _load_bench()
    figures = {"device_kind": "cpu", "steps_per_s": {"1": 0.5}}
    out = tmp_path / "new" / "x.json"   # the folder is made
    assert _bench.write_figures(figures, out, "unused.json") == str(out)
    assert read_json(out) == figures and f"wrote {out}" in capsys.readouterr().out
    monkeypatch.setattr(_bench, "REPO", str(tmp_path))
    path = _bench.write_figures(figures, None, "precision.json", announce=False)
    today = datetime.datetime.now(datetime.timezone.utc)
    assert path == str(tmp_path / "benchmarks" / "figures"
                       / f"cpu_{today:%Y-%m-%d}" / "precision.json")
    assert read_json(pathlib.Path(path)) == figures and capsys.readouterr().out == ""
