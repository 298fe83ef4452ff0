"""Generation rate of the synthetic RHD and STB writers, and sample images with keypoints.

    .venv/bin/python benchmarks/synthetic.py [--num-frames 200] [--workers 2] [--out results]
    .venv/bin/python benchmarks/synthetic.py --smoke --out /tmp/results   # 3 frames, seconds

Writes each format's data set (``--num-frames`` training frames plus a tenth for evaluation)
into a temporary folder with the CLI's writer, prints frames per second (wall clock, PNG and
label writing included) and saves ``results/benchmarks/synthetic.json``. It then reads a few
frames back *from disk*, exactly as a loader would (RHD pickle + PNGs; STB ``handPara`` from
the .mat, transformed from the depth to the colour camera, STB→RHD order, palm→wrist), and
draws the keypoints over the colour image, the depth map and the mask into
``results/synthetic_samples/`` (not committed).

Target (issue 3): ≥ 20 images/s at 320×320 (RHD) on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import resource
import sys
import tempfile
import time

import numpy as np
from PIL import Image, ImageDraw

_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_ROOT))

import _bench  # noqa: E402  (benchmarks/, the script's folder)
from data_prep.synthetic import output, rhd_writer, stb_writer  # noqa: E402
from handvae.ops import camera, skeleton  # noqa: E402

FINGER_COLOURS = [(255, 60, 60), (255, 200, 0), (60, 220, 60), (0, 180, 255), (200, 80, 255)]


def draw_skeleton(image: np.ndarray, uv: np.ndarray, visible: np.ndarray | None = None
                  ) -> Image.Image:
    """Draws the 21 RHD-order keypoints [21, 2] and bones over an RGB uint8 image."""
    picture = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(picture)
    for parent, child in skeleton.BONES:
        finger = (max(parent, child) - 1) // 4
        draw.line([tuple(uv[parent]), tuple(uv[child])], fill=FINGER_COLOURS[finger], width=2)
    for j, (u, v) in enumerate(uv):
        hidden = visible is not None and not visible[j]
        draw.ellipse([u - 2.5, v - 2.5, u + 2.5, v + 2.5],
                     fill=(0, 0, 0) if hidden else (255, 255, 255), outline=(0, 0, 0))
    return picture


def _grey(values: np.ndarray, near: float, far: float) -> np.ndarray:
    scaled = np.clip((far - values) / (far - near), 0.0, 1.0)
    return np.repeat((255 * scaled).astype(np.uint8)[..., None], 3, axis=-1)


def rhd_samples(root: pathlib.Path, folder: pathlib.Path, count: int) -> list[pathlib.Path]:
    """Colour | depth | mask panels of the first ``count`` RHD training frames."""
    split = root / "RHD_published_v2" / "training"
    annotations = rhd_writer.read_annotations(split / "anno_training.pickle")
    paths = []
    for index in sorted(annotations)[:count]:
        anno = annotations[index]
        name = f"{index:05d}.png"
        colour = output.load_png(split / "color" / name)
        depth = rhd_writer.decode_depth(output.load_png(split / "depth" / name))
        mask = output.load_png(split / "mask" / name)
        hand = slice(0, 21) if np.sum((mask >= 2) & (mask <= 17)) > np.sum(mask >= 18) \
            else slice(21, 42)
        uv, visible = anno["uv_vis"][hand, :2], anno["uv_vis"][hand, 2] > 0.5
        near = float(anno["xyz"][hand, 2].min()) - 0.05
        panels = [draw_skeleton(colour, uv, visible),
                  draw_skeleton(_grey(depth, near, near + 0.4), uv, visible),
                  draw_skeleton((mask.astype(np.uint16) * 7 % 256).astype(np.uint8)
                                .repeat(3).reshape(mask.shape + (3,)), uv, visible)]
        paths.append(_save_row(panels, folder / f"rhd_{index:05d}.png"))
    return paths


def stb_samples(root: pathlib.Path, folder: pathlib.Path, count: int) -> list[pathlib.Path]:
    """Colour | depth panels of STB frames, keypoints from the .mat labels."""
    paths = []
    for label in sorted((root / "labels").glob("*_SK.mat")):
        sequence = label.name[:-len("_SK.mat")]
        handpara = stb_writer.read_labels(label).transpose(2, 1, 0)  # [N, 21, 3] mm, depth cam
        for index in range(min(count - len(paths), len(handpara))):
            depth_cam = handpara[index][skeleton.STB_TO_RHD]
            colour_cam = skeleton.stb_palm_to_wrist(camera.stb_depth_to_color(depth_cam))
            colour = output.load_png(root / "images" / sequence / f"SK_color_{index}.png")
            depth_mm = stb_writer.decode_depth(
                output.load_png(root / "images" / sequence / f"SK_depth_{index}.png"))
            near = float(depth_cam[:, 2].min()) - 50.0
            panels = [draw_skeleton(colour, camera.project(colour_cam, camera.STB_SK_COLOR_K)),
                      draw_skeleton(_grey(depth_mm, near, near + 400.0),
                                    camera.project(skeleton.stb_palm_to_wrist(depth_cam),
                                                   camera.STB_SK_DEPTH_K))]
            paths.append(_save_row(panels, folder / f"stb_{sequence}_{index}.png"))
        if len(paths) >= count:
            break
    return paths


def _save_row(panels: list[Image.Image], path: pathlib.Path) -> pathlib.Path:
    width = sum(p.width for p in panels)
    row = Image.new("RGB", (width, panels[0].height))
    x = 0
    for panel in panels:
        row.paste(panel, (x, 0))
        x += panel.width
    row.save(path)
    return path


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# --smoke: the script's code paths in seconds (tests/benchmarks/test_benchmarks_smoke.py).
SMOKE = {"num_frames": 2, "workers": 1, "samples": 1}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-frames", type=int, default=200,
                        help="training frames per format (evaluation: a tenth more)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--samples", type=int, default=4, help="sample images per format")
    parser.add_argument("--out", default=str(_ROOT / "results"),
                        help="results folder: benchmarks/synthetic.json and synthetic_samples/")
    args = _bench.parse_args(parser, argv, SMOKE)
    results_dir = pathlib.Path(args.out)
    samples_dir = results_dir / "synthetic_samples"
    samples_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "benchmarks").mkdir(parents=True, exist_ok=True)
    num_eval = max(1, args.num_frames // 10)
    report = {"num_train": args.num_frames, "num_eval": num_eval, "workers": args.workers,
              "cpu_count": os.cpu_count(), "platform": platform.platform(),
              "python": platform.python_version(), "numpy": np.__version__,
              "smoke": args.smoke, "formats": {}}
    with tempfile.TemporaryDirectory(prefix="synthetic_bench_") as scratch:
        for name, writer, draw in (("rhd", rhd_writer.write_rhd, rhd_samples),
                                   ("stb", stb_writer.write_stb, stb_samples)):
            out = pathlib.Path(scratch) / name
            cpu_before = _cpu_seconds()
            start = time.perf_counter()
            writer(out, num_train=args.num_frames, num_eval=num_eval, seed=0,
                   workers=args.workers, progress=False)
            seconds = time.perf_counter() - start
            cpu = _cpu_seconds() - cpu_before
            frames = args.num_frames + num_eval
            size = {"rhd": "320x320", "stb": "640x480"}[name]
            # The machine is shared: wall-clock rates vary with other users' load. CPU time
            # per frame (this process and its workers) does not; ``cores / cpu`` is the rate
            # the same number of otherwise idle cores would give.
            report["formats"][name] = {
                "frames": frames, "image_size": size, "wall_seconds": round(seconds, 3),
                "images_per_second_wall": round(frames / seconds, 2),
                "cpu_seconds_per_frame": round(cpu / frames, 4),
                "images_per_second_on_idle_cores": round(args.workers * frames / cpu, 2),
                "load_average_1min": round(os.getloadavg()[0], 2)}
            print(f"{name}: {frames} frames ({size}) in {seconds:.1f} s wall = "
                  f"{frames / seconds:.1f} images/s with {args.workers} workers; "
                  f"{1000 * cpu / frames:.0f} ms CPU per frame = "
                  f"{args.workers * frames / cpu:.1f} images/s on {args.workers} idle cores "
                  f"(load average {os.getloadavg()[0]:.1f})")
            for path in draw(out, samples_dir, args.samples):
                print(f"  sample {path}")
    _bench.write_figures(report, results_dir / "benchmarks" / "synthetic.json",
                         "synthetic.json")
    return report


if __name__ == "__main__":
    main()
