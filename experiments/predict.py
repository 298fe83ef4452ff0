r"""Predict hand poses on your own PNG/JPEG images with a trained work directory.

    python -m experiments.predict --workdir workdirs/demo_s4 --input photos/ hand.jpg \
        [--boxes boxes.json | --box x0,y0,x1,y1] [--focal F] [--hand-side left] --out preds/

For each image ``<stem>.png`` (the 2-D skeleton on the image beside the 3-D pose), ``<stem>.json``
(schema: ``handvae/inference/outputs.py``) and, for strategies with a cloud decoder,
``<stem>.ply`` are written under ``--out``; a summary line ends the run. One bad image never
stops the others; the exit status is 1 when any image failed, 2 when the model cannot be
loaded.

``--boxes`` is a JSON object keyed by image path or file name; a value is a box
``[x0, y0, x1, y1]`` (pixels) or an object with ``box`` and optional ``hand_side``,
``focal`` (pixels), ``K`` (3×3) and ``hand_scale`` (metres, the middle MCP→PIP bone).
``--rhd-annotations anno_evaluation.pickle`` takes boxes, sides and K from an RHD-layout
annotation file (real RHD or the synthetic set).
Without a box the whole image is the crop; without ``K``/``focal`` the intrinsics assume a
55° field of view across the longer side (``handvae.inference.geometry``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import tqdm

from handvae.inference import images, outputs
from handvae.inference.predictor import Predictor


def parse_box(text: str) -> list[float]:
    """``"x0,y0,x1,y1"`` → four floats (argparse type)."""
    try:
        box = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--box {text!r}: expected four numbers x0,y0,x1,y1"
                                         ) from None
    if len(box) != 4:
        raise argparse.ArgumentTypeError(f"--box {text!r}: expected four numbers x0,y0,x1,y1")
    return box


def read_boxes(path: str) -> dict[str, dict[str, Any]]:
    """Reads ``--boxes``: {path or file name: box | {"box", "hand_side", "focal", "K",
    "hand_scale"}} → {key: entry dict}."""
    try:
        with open(path) as f:
            raw = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"--boxes {path}: cannot read a JSON object ({e})") from None
    if not isinstance(raw, dict):
        raise ValueError(  # noqa: TRY004 (a bad file, reported with the other input errors)
            f"--boxes {path}: expected a JSON object keyed by image path or name")
    entries = {}
    allowed = {"box", "hand_side", "focal", "K", "hand_scale"}
    for key, value in raw.items():
        entry = value if isinstance(value, dict) else {"box": value}
        unknown = set(entry) - allowed
        if unknown:
            raise ValueError(f"--boxes {path}: entry {key!r} has unknown fields "
                             f"{sorted(unknown)}; allowed: {sorted(allowed)}")
        entries[key] = entry
    return entries


def boxes_from_rhd_annotations(path: str) -> dict[str, dict[str, Any]]:
    """Per-frame entries from an RHD-layout ``anno_*.pickle`` (real RHD or the synthetic set).

    For each frame ``%05d.png``: ``K``, the side with more visible keypoints and the tight
    box around its visible keypoints (``uv_vis``), so predictions are made as the builders
    crop (``data_prep/rhd``: keypoints 0–20 left hand, 21–41 right hand).
    """
    import numpy as np

    from data_prep import safe_pickle

    with open(path, "rb") as f:
        annotations = safe_pickle.load(f)
    entries = {}
    for frame, annotation in annotations.items():
        uv_vis = np.asarray(annotation["uv_vis"], np.float64).reshape(42, 3)
        visible = uv_vis[:, 2] > 0
        left, right = visible[:21].sum(), visible[21:].sum()
        side, offset = ("left", 0) if left > right else ("right", 21)
        hand = uv_vis[offset:offset + 21][visible[offset:offset + 21]]
        if len(hand) < 2:
            continue  # no visible hand: the frame is predicted without a box
        entries[f"{int(frame):05d}.png"] = {
            "box": [*hand[:, :2].min(0).tolist(), *hand[:, :2].max(0).tolist()],
            "hand_side": side, "K": np.asarray(annotation["K"], np.float64).tolist()}
    return entries


def _entry_for(path: str, boxes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    for key in (path, os.path.normpath(path), os.path.basename(path)):
        if key in boxes:
            return boxes[key]
    return {}


def _output_stems(paths: Sequence[str]) -> list[str]:
    """Unique output names: the file stem, suffixed ``_2``, ``_3`` … on collisions."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems


def predict_files(predictor: Predictor, paths: Sequence[str], out: str, *,
                  boxes: dict[str, dict[str, Any]] | None = None,
                  box: Sequence[float] | None = None, focal: float | None = None,
                  hand_side: str | None = None, overlays: bool = True, progress: bool = True
                  ) -> tuple[int, list[tuple[str, str]]]:
    """Predicts every image in batches and writes its outputs.

    Returns:
      (number of images written, failures as (path, message)).
    """
    os.makedirs(out, exist_ok=True)
    boxes = boxes or {}
    failures: list[tuple[str, str]] = []
    written = 0
    stems = _output_stems(paths)
    chunk = max(predictor.batch_size, 1) * 4
    with tqdm.tqdm(total=len(paths), unit="image", disable=not progress or len(paths) < 2,
                   dynamic_ncols=True) as bar:
        for start in range(0, len(paths), chunk):
            part = list(paths[start:start + chunk])
            items, sources, loaded = [], [], []
            for path in part:
                entry = _entry_for(path, boxes)
                given_focal = entry.get("focal", focal)
                sources.append("given" if entry.get("K") is not None
                               else "focal" if given_focal is not None else "default_fov")
                try:
                    image, conversion = images.read_image(path)
                except images.ImageError as error:
                    loaded.append(error)
                    items.append(None)
                    continue
                loaded.append((image, conversion))
                items.append({"image": image, "name": path, "box": entry.get("box", box),
                              "K": entry.get("K"), "focal": given_focal,
                              "hand_side": entry.get("hand_side", hand_side),
                              "hand_scale": entry.get("hand_scale")})
            results = iter(predictor.predict_many([i for i in items if i is not None]))
            for k, (path, item) in enumerate(zip(part, items)):
                result = loaded[k] if item is None else next(results)
                if isinstance(result, Exception):
                    failures.append((path, str(result)))
                    tqdm.tqdm.write(f"FAILED {result}", file=sys.stderr)
                    bar.update(1)
                    continue
                image, conversion = loaded[k]
                result = dataclasses.replace(result, conversion=conversion)
                stem = os.path.join(out, stems[start + k])
                try:
                    ply = None
                    if result.cloud is not None:
                        ply = os.path.basename(stem) + ".ply"
                        outputs.write_ply(result.cloud, stem + ".ply")
                    record = outputs.prediction_record(
                        result, image=path, image_size=image.shape[:2],
                        strategy=predictor.strategy, checkpoint=predictor.source,
                        intrinsics_source=sources[k], hand_scale=item.get("hand_scale"),
                        cloud_ply=ply)
                    outputs.write_json(record, stem + ".json")
                    if overlays:
                        outputs.write_overlay(image, result, stem + ".png",
                                              title=os.path.basename(path))
                    written += 1
                except (OSError, ValueError) as error:
                    failures.append((path, f"{path}: writing outputs failed: {error}"))
                    tqdm.tqdm.write(f"FAILED {path}: {error}", file=sys.stderr)
                bar.update(1)
    return written, failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.predict",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="training work directory")
    parser.add_argument("--input", required=True, nargs="+", help="PNG/JPEG files or folders")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--boxes", help="JSON {image path or name: [x0,y0,x1,y1] | {...}}")
    where.add_argument("--box", type=parse_box, help="x0,y0,x1,y1 for every image (pixels)")
    where.add_argument("--rhd-annotations", help="an RHD anno_*.pickle: boxes, sides and K "
                       "of its frames (e.g. the demo's synthetic test set)")
    parser.add_argument("--focal", type=float, help="focal length in pixels (default: 55° fov)")
    parser.add_argument("--hand-side", choices=("right", "left"), default=None,
                        help="side of the hands (default right; --boxes may set it per image)")
    parser.add_argument("--which", choices=("best", "latest"), default="best")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--no-overlays", action="store_true", help="skip the PNG overlays")
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args(argv)

    begin = time.perf_counter()
    try:
        boxes = read_boxes(args.boxes) if args.boxes else None
        if args.rhd_annotations:
            boxes = boxes_from_rhd_annotations(args.rhd_annotations)
        predictor = Predictor.from_workdir(args.workdir, args.which, batch_size=args.batch_size)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    paths, failures = images.list_images(args.input)
    for _, message in failures:
        print(f"FAILED {message}", file=sys.stderr)
    written, failed = predict_files(predictor, paths, args.out, boxes=boxes, box=args.box,
                                    focal=args.focal, hand_side=args.hand_side,
                                    overlays=not args.no_overlays)
    failures += failed
    seconds = time.perf_counter() - begin
    print(f"predicted {written} of {len(paths)} images ({len(failures)} failed) in "
          f"{seconds:.1f} s ({written / max(seconds, 1e-9):.2f} images/s), strategy "
          f"{predictor.strategy}; outputs in {os.path.abspath(args.out)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
