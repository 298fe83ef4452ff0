"""The demo driver's bookkeeping: resume markers, clear failures, the report it writes."""

import json
import os
import sys
import time

import numpy as np
import pytest

from experiments import demo
from handvae.evaluation import metrics


def test_markers_and_resume_checks(tmp_path):
    params = {"num_train": 4, "num_eval": 2, "seed": 0}
    assert not demo._marker_matches(str(tmp_path), params)
    demo._write_marker(str(tmp_path), params)
    assert demo._marker_matches(str(tmp_path), params)
    assert not demo._marker_matches(str(tmp_path), {**params, "seed": 1})  # redo on change

    workdir = tmp_path / "w"
    (workdir / "eval").mkdir(parents=True)
    assert not demo._trained(str(workdir), 10)
    (workdir / "final_metrics.json").write_text(json.dumps({"step": 5.0}))
    assert not demo._trained(str(workdir), 10)  # a shorter run resumes, not skips
    assert demo._trained(str(workdir), 5)
    assert not demo._evaluated(str(workdir))
    (workdir / "eval" / "metrics.json").write_text("{}")
    assert demo._evaluated(str(workdir))
    later = time.time() + 10
    os.utime(workdir / "final_metrics.json", (later, later))  # retrained since: re-evaluate
    assert not demo._evaluated(str(workdir))


def test_missing_parts_and_failed_steps_are_named(monkeypatch):
    monkeypatch.setitem(demo.NEEDS, "train", ("handvae.no_such_module", "json"))
    assert demo.missing_modules("train") == ["handvae.no_such_module"]
    with pytest.raises(demo.StepFailed, match="exit 3.*rerun it alone"):
        demo._run([sys.executable, "-c", "raise SystemExit(3)"], "generate")


def test_write_report(tmp_path):
    rng = np.random.default_rng(0)
    results = {"S1 (R2P)": metrics.summarize_errors(rng.gamma(2.0, 12.0, (8, 21))),
               "S4 (RC2CHP_poe)": metrics.summarize_errors(rng.gamma(2.0, 9.0, (8, 21)))}
    results["S1 (R2P)"]["constant_pose_baseline"] = {"mean_epe_mm": 53.25, "auc_20_50": 0.1}
    workdir = tmp_path / "workdirs" / "S4_RC2CHP_poe"
    (workdir / "eval").mkdir(parents=True)
    (workdir / "eval" / "reconstruction.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
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
    assert demo._earlier(str(tmp_path), "build_s") == "skipped (exists)"
    (tmp_path / "timings.json").write_text(json.dumps({"build_s": 81.4, "train_S1_s": "x"}))
    assert demo._earlier(str(tmp_path), "build_s") == "81 s (earlier run)"
    assert demo._earlier(str(tmp_path), "train_S1_s") == "skipped (exists)"
    (tmp_path / "timings.json").write_text(json.dumps({"build_s": "81 s (earlier run)"}))
    assert demo._earlier(str(tmp_path), "build_s") == "81 s (earlier run)"
