"""Observability: parameter counts, timing/memory metrics and the profiler hook of the loop."""

import os

import jax
import numpy as np
import pytest

import training_standins as standins
from handvae.training import loop, observability, writers


def test_parameter_counts_per_module_and_depth():
    params = {"encoder": {"trunk": {"kernel": np.zeros((3, 4)), "bias": np.zeros(4)},
                          "head": {"kernel": np.zeros((4, 2))}},
              "decoder": {"output": {"kernel": jax.ShapeDtypeStruct((2, 5), np.float32)}}}
    assert observability.parameter_counts(params) == {"decoder": 10, "encoder": 24}
    assert observability.parameter_counts(params, 2) == {
        "decoder/output": 10, "encoder/head": 8, "encoder/trunk": 16}
    table = observability.parameter_overview(params)
    assert "encoder/trunk" in table and "34" in table.splitlines()[-1]


def test_timing_metrics_are_per_step_and_consistent():
    metrics = observability.timing_metrics(elapsed_s=2.0, data_wait_s=0.5, steps=4)
    assert metrics == pytest.approx({"steps_per_sec": 2.0, "step_time_ms": 500.0,
                                     "data_wait_ms": 125.0, "data_wait_fraction": 0.25})


class _Device:
    def __init__(self, stats):
        self._stats = stats

    def memory_stats(self):
        return self._stats


def test_device_memory_is_the_max_where_reported_and_absent_on_cpu():
    devices = [_Device({"bytes_in_use": 10, "peak_bytes_in_use": 30}),
               _Device({"bytes_in_use": 20, "peak_bytes_in_use": 25}), _Device(None)]
    assert observability.device_memory_metrics(devices) == {
        "device_memory_bytes_in_use": 20.0, "device_memory_peak_bytes": 30.0}
    if jax.default_backend() == "cpu":
        assert observability.device_memory_metrics() == {}


@pytest.mark.parametrize("value, expected", [("", None), (None, None), ("3", (3, 3)),
                                             ("2,5", (2, 5)), (" 2 , 5 ", (2, 5)), (4, (4, 4))])
def test_parse_profile_steps(value, expected):
    assert observability.parse_profile_steps(value) == expected


@pytest.mark.parametrize("value", ["5,2", "a,b", "-1,3", "1,2,3"])
def test_parse_profile_steps_refuses_bad_values(value):
    with pytest.raises(ValueError, match="profile_steps"):
        observability.parse_profile_steps(value)


def test_loop_writes_a_trace_of_the_profiled_steps_and_timing_metrics(tmp_path, capsys):
    config = standins.tiny_config()
    config.profile_steps = "2,3"
    loop.train_and_evaluate(config, str(tmp_path), batches=standins.batches(config),
                            eval_batches=False, functions=standins.FUNCTIONS)
    traces = [f for _, _, files in os.walk(tmp_path / "profile") for f in files]
    assert any(f.endswith(".xplane.pb") for f in traces), traces
    train = writers.read_metrics(str(tmp_path), "train")
    assert {"steps_per_sec", "step_time_ms", "data_wait_ms", "data_wait_fraction"} <= set(
        train[0])
    if jax.default_backend() == "cpu":   # not reported there: omitted, never zeros
        assert not any(k.startswith("device_memory") for k in train[0])
    assert "parameters" in capsys.readouterr().err


def test_a_bad_profile_range_fails_before_anything_is_written(tmp_path):
    config = standins.tiny_config()
    config.profile_steps = "3,1"
    with pytest.raises(ValueError, match="profile_steps"):
        loop.train_and_evaluate(config, str(tmp_path / "run"), batches=standins.batches(config),
                                eval_batches=False, functions=standins.FUNCTIONS)
    assert not os.path.exists(tmp_path / "run" / "config.json")
