"""Reports and figures: tables carry the right numbers, plots are written as PNG."""

import json

import numpy as np
import pytest

from handvae.data import spec
from handvae.evaluation import figures, metrics, report


def _png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def summaries():
    rng = np.random.default_rng(0)
    return {"S1 (R2P)": metrics.summarize_errors(rng.gamma(2.0, 12.0, (16, 21))),
            "S4 (RC2CHP_poe)": metrics.summarize_errors(rng.gamma(2.0, 8.0, (16, 21)))}


def test_comparison_table_lists_each_model_and_reference(summaries):
    table = report.comparison_table(summaries, reference={"paper S4": {"mean_epe_mm": 13.14}})
    lines = table.strip().splitlines()
    assert len(lines) == 2 + 3
    s1 = summaries["S1 (R2P)"]
    assert f"| S1 (R2P) | {s1['mean_epe_mm']:.2f} | {s1['median_epe_mm']:.2f} | " \
           f"{s1['auc_20_50']:.3f} | {s1['auc_0_50']:.3f} | 16 |" == lines[2]
    assert lines[4].startswith("| paper S4 | 13.14 | – |")


def test_comparison_table_rejects_a_non_summary():
    with pytest.raises(ValueError, match="summarize_errors"):
        report.comparison_table({"x": {"mean_epe_mm": 1.0}})


def test_metrics_markdown_and_json_round_trip(tmp_path, summaries):
    s = dict(summaries["S1 (R2P)"])
    s["per_joint_mean_mm"] = list(s["per_joint_mean_mm"])
    s["per_joint_mean_mm"][3] = float("nan")
    page = report.metrics_markdown(s, title="S1")
    assert "| 20 | little_mcp |" in page and "## 3-D PCK" in page
    report.write_json(tmp_path / "m.json", s)
    loaded = json.loads((tmp_path / "m.json").read_text())
    assert loaded["per_joint_mean_mm"][3] is None
    assert loaded["mean_epe_mm"] == pytest.approx(s["mean_epe_mm"])


def test_plot_pck_writes_png(tmp_path, summaries):
    report.plot_pck(summaries, tmp_path / "pck.png", title="synthetic")
    assert _png(tmp_path / "pck.png")
    with pytest.raises(ValueError, match="threshold_range_mm"):
        report.plot_pck(summaries, tmp_path / "bad.png", threshold_range_mm=(20.0, 21.0))


def test_figures_write_png(tmp_path):
    rng = np.random.default_rng(1)
    k, s, n = 2, 16, 32
    rgb = ((rng.uniform(size=(k, s, s, 3)) - spec.RGB_MEAN) / spec.RGB_STD).astype(np.float32)
    pose = rng.normal(size=(k, 21, 3))
    cloud = rng.normal(size=(k, n, 3))
    figures.reconstruction_figure(rgb, cloud, cloud + 0.1, tmp_path / "fig3.png",
                                  pose_gt=pose, pose_pred=pose + 0.1)
    figures.reconstruction_figure(rgb, cloud, None, tmp_path / "fig3_nocloud.png",
                                  pose_pred=pose)
    figures.interpolation_figure(rgb, np.linspace(pose[0], pose[1], 4),
                                 np.linspace(cloud[0], cloud[1], 4), tmp_path / "fig4.png")
    figures.pose_grid_figure(rgb, pose, pose + 0.05, tmp_path / "poses.png",
                             errors_mm=[1.0, 2.0])
    for name in ("fig3.png", "fig3_nocloud.png", "fig4.png", "poses.png"):
        assert _png(tmp_path / name), name
    np.testing.assert_allclose(figures.denormalize_rgb(rgb), np.clip(
        rgb * spec.RGB_STD + spec.RGB_MEAN, 0, 1))
    with pytest.raises(ValueError, match="poses"):
        figures.interpolation_figure(rgb, pose[:1], None, tmp_path / "x.png")


def test_plot_to_writes_one_png_and_closes_the_figure_even_when_drawing_fails(tmp_path):
    import matplotlib.pyplot as plt

    open_before = len(plt.get_fignums())
    path = tmp_path / "sub" / "curve.png"
    with figures.plot_to(path) as ax:
        ax.plot([0, 1], [1, 0])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    broken = tmp_path / "broken.png"
    with pytest.raises(RuntimeError, match="drawing failed"):
        with figures.plot_to(broken) as ax:
            raise RuntimeError("drawing failed")
    assert not broken.exists()
    assert len(plt.get_fignums()) == open_before
