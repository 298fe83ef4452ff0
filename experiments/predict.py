r"""Predict hand poses on your own PNG/JPEG images with a trained work directory.

    python -m experiments.predict --workdir workdirs/demo_s4 --input photos/ hand.jpg \
        [--boxes boxes.json | --box x0,y0,x1,y1] [--focal F] [--hand-side left] --out preds/

For each image ``<stem>.png`` (the 2-D skeleton on the image beside the 3-D pose), ``<stem>.json``
(schema: ``handvae/inference/outputs.py``) and, for strategies with a cloud decoder,
``<stem>.ply`` are written under ``--out``; a summary line ends the run. One bad image never
stops the others; the exit status is 1 when any image failed, 2 when nothing was predicted
because an argument is wrong or the model cannot be loaded.

What it may overwrite or delete, and what it refuses (before the model loads, exit 2):

* it replaces or removes only ``<stem>.json``/``.png``/``.ply`` files that it wrote itself
  (each carries a mark, ``handvae.inference.outputs.written_by_predict``): an earlier run's
  outputs for the same image, so no other model's ``.ply`` or overlay stays behind, and an
  image that now fails loses its old outputs; any other file at such a name fails that image,
  untouched;
* it refuses an ``--out`` that is a file or lies below one, an ``--out`` that is the folder
  of an input image (the overlays would overwrite the inputs), ``--boxes`` entries that match
  no input image, and an unreadable ``--boxes`` or ``--rhd-annotations`` file.

``--boxes`` is a JSON object keyed by image path or file name; a value is a box
``[x0, y0, x1, y1]`` (pixels) or an object with ``box`` and optional ``hand_side``,
``focal`` (pixels), ``K`` (3×3) and ``hand_scale`` (metres, the middle MCP→PIP bone).
``--rhd-annotations anno_evaluation.pickle`` takes boxes, sides and K from an RHD-layout
annotation file (real RHD or the synthetic set).
Without a box the whole image is the crop; without ``K``/``focal`` the intrinsics assume a
55° field of view across the longer side (``handvae.inference.geometry``). Boxes and K are in
the upright image's pixels (a photo's EXIF orientation applied). A box mostly outside its
image is predicted with a ``WARNING`` line (also in the JSON's ``warnings``); an image under
16 pixels a side fails.
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

    Raises:
      ValueError: the file is missing, empty, truncated, not a pickle or not RHD's layout
        (one line naming it).
    """
    import pickle

    import numpy as np

    from data_prep import safe_pickle

    what = f"--rhd-annotations {path}"
    try:
        with open(path, "rb") as f:
            annotations = safe_pickle.load(f)
    except OSError as error:
        raise ValueError(f"{what}: cannot read it ({error.strerror or error})") from None
    except EOFError:
        raise ValueError(f"{what}: empty or truncated (ends before the pickle does); "
                         "copy it again") from None
    except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, ImportError,
            IndexError, KeyError, UnicodeDecodeError) as error:
        raise ValueError(f"{what}: not a readable RHD annotation pickle "
                         f"({type(error).__name__}: {str(error)[:200]})") from None
    if not isinstance(annotations, dict):
        raise ValueError(f"{what}: expected a dict {{frame: annotation}} (RHD's "
                         f"anno_*.pickle), got {type(annotations).__name__}")
    entries = {}
    for frame, annotation in annotations.items():
        try:
            name = f"{int(frame):05d}.png"
            uv_vis = np.asarray(annotation["uv_vis"], np.float64).reshape(42, 3)
            K = np.asarray(annotation["K"], np.float64).reshape(3, 3).tolist()
        except (TypeError, ValueError, KeyError, IndexError) as error:
            raise ValueError(f"{what}: frame {frame!r} lacks RHD's uv_vis [42, 3] and K "
                             f"[3, 3] ({type(error).__name__}: {str(error)[:200]})") from None
        visible = uv_vis[:, 2] > 0
        left, right = visible[:21].sum(), visible[21:].sum()
        side, offset = ("left", 0) if left > right else ("right", 21)
        hand = uv_vis[offset:offset + 21][visible[offset:offset + 21]]
        if len(hand) < 2:
            continue  # no visible hand: the frame is predicted without a box
        entries[name] = {"box": [*hand[:, :2].min(0).tolist(), *hand[:, :2].max(0).tolist()],
                         "hand_side": side, "K": K}
    return entries


def _keys_of(path: str) -> tuple[str, ...]:
    """The ``--boxes`` keys that name ``path``, most specific first."""
    return (path, os.path.normpath(path), os.path.basename(path))


def _entry_for(path: str, boxes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    for key in _keys_of(path):
        if key in boxes:
            return boxes[key]
    return {}


def unmatched_keys(boxes: dict[str, dict[str, Any]], paths: Sequence[str]) -> list[str]:
    """``--boxes`` keys that name none of ``paths`` (after a typo, the image the entry was
    meant for would silently be cropped whole)."""
    matched = {key for path in paths for key in _keys_of(path)}
    return [key for key in boxes if key not in matched]


def check_out(out: str, inputs: Sequence[str], paths: Sequence[str]) -> None:
    """Refuses an ``--out`` that cannot be a folder or that holds input images.

    Args:
      out: the ``--out`` folder.
      inputs: the ``--input`` arguments (files and folders).
      paths: the image files they list.

    Raises:
      ValueError: ``out`` is a file or lies below one, or it is a folder given in ``inputs``
        or the folder of one of ``paths`` (links resolved): the overlays ``<stem>.png``
        would overwrite input images or mix with them.
    """
    blocking = outputs.blocking_file(out)
    if blocking is not None:
        raise ValueError(f"--out {out}: {blocking} is a file, not a folder; choose a folder "
                         "for the outputs")
    target = os.path.realpath(out)
    folders = [p for p in inputs if os.path.isdir(p)] + [os.path.dirname(os.path.abspath(p))
                                                         for p in paths]
    for folder in folders:
        if os.path.realpath(folder) == target:
            raise ValueError(f"--out {out} is the folder of the input images ({folder}): the "
                             "overlays would overwrite them; choose a separate folder, e.g. "
                             f"{os.path.join(out, 'predictions')}")


def _clear_outputs(stem: str, keep: Sequence[str] = ()) -> list[str]:
    """Removes the files predict wrote earlier for ``stem`` except the suffixes in ``keep``.

    Returns:
      Files at ``keep``'s suffixes that exist but predict did not write (left untouched).
    """
    foreign = []
    for suffix in outputs.OUTPUT_SUFFIXES:
        path = stem + suffix
        if not os.path.lexists(path):
            continue
        if not outputs.written_by_predict(path):
            if suffix in keep:
                foreign.append(path)
        elif suffix not in keep:
            os.remove(path)
    return foreign


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
                stem = os.path.join(out, stems[start + k])
                if isinstance(result, Exception):
                    failures.append((path, str(result)))
                    tqdm.tqdm.write(f"FAILED {result}", file=sys.stderr)
                    try:  # an earlier run's outputs for this image would look current
                        _clear_outputs(stem)
                    except OSError as error:
                        tqdm.tqdm.write(f"FAILED {path}: removing its earlier outputs: {error}",
                                        file=sys.stderr)
                    bar.update(1)
                    continue
                image, conversion = loaded[k]
                result = dataclasses.replace(result, conversion=conversion)
                for message in result.warnings:
                    tqdm.tqdm.write(f"WARNING {message}", file=sys.stderr)
                keep = [".json"] + [".png"] * overlays + [".ply"] * (result.cloud is not None)
                try:
                    foreign = _clear_outputs(stem, keep)
                    if foreign:
                        raise FileExistsError(
                            f"{', '.join(foreign)} exists and was not written by predict; "
                            "move it or choose another --out")
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
                    message = f"{path}: writing outputs failed: {error}"
                    failures.append((path, message))
                    tqdm.tqdm.write(f"FAILED {message}", file=sys.stderr)
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
    paths, failures = images.list_images(args.input)
    try:  # every check on the arguments before the model loads (seconds)
        check_out(args.out, args.input, paths)
        boxes = read_boxes(args.boxes) if args.boxes else None
        if boxes:
            unmatched = unmatched_keys(boxes, paths)
            if unmatched:
                raise ValueError(
                    f"--boxes {args.boxes}: keys that match no input image "
                    f"({len(unmatched)}): {', '.join(map(repr, unmatched[:5]))}"
                    f"{' …' * (len(unmatched) > 5)} "
                    "(a key is an image's path as given to --input, or its file name)")
        if args.rhd_annotations:
            boxes = boxes_from_rhd_annotations(args.rhd_annotations)
        predictor = Predictor.from_workdir(args.workdir, args.which, batch_size=args.batch_size)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as error:
        print(f"error: --out {args.out}: cannot make the folder ({error})", file=sys.stderr)
        return 2
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
