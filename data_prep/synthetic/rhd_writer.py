"""Writes synthetic frames in the Rendered Hand Pose Dataset's layout (RHD_published_v2).

Layout (Zimmermann & Brox, ICCV 2017; the data set's README and ``view_samples.py``)::

    <out>/RHD_published_v2/training/color/00000.png      RGB uint8, 320×320
    <out>/RHD_published_v2/training/mask/00000.png       uint8 part ids, 320×320
    <out>/RHD_published_v2/training/depth/00000.png      RGB uint8, depth packed in R, G
    <out>/RHD_published_v2/training/anno_training.pickle
    <out>/RHD_published_v2/evaluation/...                 the same, "evaluation"

``anno_<set>.pickle`` is a dict frame index (int) → ``{'xyz': [42, 3] float32 metres,
'uv_vis': [42, 3] float32 (u, v, visible 0/1), 'K': [3, 3] float32}``; keypoints 0–20 are
the left hand and 21–41 the right, each in RHD order. Depth: metres = (R·256 + G) / 65535 · 5
(B is 0). Mask ids: 0 background, 1 body, 2–17 left hand, 18–33 right hand (per hand:
3 ids per finger from thumb to little, tip to palm, then the palm).

Each synthetic frame renders one hand (left or right), fully annotated; the other hand's 42-slot
half holds a plausible hand placed outside the image with ``visible`` 0, so the rendered hand
is always the dominant one (the only one with mask pixels).
"""

from __future__ import annotations

import os
import pathlib
import pickle

import numpy as np

from data_prep.synthetic import output, scene
from handvae.ops import camera

IMAGE_SIZE = camera.RHD_IMAGE_SIZE  # (height, width) = (320, 320)
SPLITS = {"train": "training", "eval": "evaluation"}
DEPTH_MAX_M = 5.0
LEFT_ID_OFFSET = 2   # mask id of left-hand part 0
RIGHT_ID_OFFSET = 18  # mask id of right-hand part 0
BODY_ID = 1
BACKGROUND_RANGE_M = (1.2, 4.5)
FOCAL_RANGE_PX = (260.0, 310.0)
ANNOTATION_KEYS = ("xyz", "uv_vis", "K")


def encode_depth(depth_m: np.ndarray) -> np.ndarray:
    """Packs depth as RHD does.

    Args:
      depth_m: [H, W] depth in metres; values are clipped to [0, 5].

    Returns:
      [H, W, 3] uint8 with ``q = round(depth / 5 · 65535)`` split as R = q // 256,
      G = q % 256, B = 0.
    """
    q = np.round(np.clip(depth_m, 0.0, DEPTH_MAX_M) / DEPTH_MAX_M * 65535.0).astype(np.uint16)
    packed = np.zeros(depth_m.shape + (3,), np.uint8)
    packed[..., 0] = q >> 8
    packed[..., 1] = q & 0xFF
    return packed


def decode_depth(packed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_depth`: [H, W, 3 or 4] uint8 → [H, W] float32 metres."""
    packed = np.asarray(packed)
    if packed.ndim != 3 or packed.shape[-1] < 2:
        raise ValueError(f"packed depth must be [H, W, 3], got {packed.shape}")
    q = packed[..., 0].astype(np.float32) * 256.0 + packed[..., 1].astype(np.float32)
    return q / 65535.0 * DEPTH_MAX_M


def mask_ids(part_id: np.ndarray, side: str) -> np.ndarray:
    """Maps internal part labels ([H, W] int, -1 background) to RHD mask ids (uint8)."""
    offset = LEFT_ID_OFFSET if side == "left" else RIGHT_ID_OFFSET
    ids = np.where(part_id >= 0, part_id + offset, 0)
    ids = np.where(part_id == scene.PART_BODY, BODY_ID, ids)
    return ids.astype(np.uint8)


def sample_intrinsics(rng: np.random.Generator) -> np.ndarray:
    """[3, 3] pinhole K of a 320×320 RHD-like camera (principal point at the centre)."""
    focal = rng.uniform(*FOCAL_RANGE_PX)
    height, width = IMAGE_SIZE
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def make_frame(seed: int, split: str, index: int, plain: bool = False
               ) -> tuple[scene.HandFrame, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Renders one RHD frame.

    Returns:
      (frame, annotation dict as stored in the pickle, mask [320, 320] uint8,
      packed depth [320, 320, 3] uint8).
    """
    rng = output.frame_rng(seed, split, index)
    side = "left" if rng.uniform() < 0.5 else "right"
    K = sample_intrinsics(rng)
    frame = scene.render_hand_frame(rng, K, IMAGE_SIZE, side, BACKGROUND_RANGE_M, plain=plain)
    other_side = "right" if side == "left" else "left"
    other = scene.offscreen_hand(rng, K, IMAGE_SIZE, other_side)
    left, right = (frame.keypoints, other) if side == "left" else (other, frame.keypoints)
    xyz = np.concatenate([left, right]).astype(np.float32)
    uv = camera.project(xyz.astype(np.float64), K)
    visible = np.zeros(42, np.float32)
    first = 0 if side == "left" else 21
    visible[first:first + 21] = frame.visible
    annotation = {
        "xyz": xyz,
        "uv_vis": np.concatenate([uv, visible[:, None]], axis=1).astype(np.float32),
        "K": K.astype(np.float32),
    }
    return frame, annotation, mask_ids(frame.part_id, side), encode_depth(frame.depth)


def _write_frame(job: tuple[str, int, str, int, bool]) -> tuple[int, dict[str, np.ndarray]]:
    """Renders and writes one frame's three PNGs; returns (index, annotation)."""
    folder, seed, split, index, plain = job
    frame, annotation, mask, depth = make_frame(seed, split, index, plain=plain)
    root = pathlib.Path(folder)
    name = f"{index:05d}.png"
    output.save_png(root / "color" / name, frame.rgb)
    output.save_png(root / "mask" / name, mask)
    output.save_png(root / "depth" / name, depth)
    return index, annotation


def write_rhd(out: str | os.PathLike, num_train: int, num_eval: int, seed: int = 0,
              workers: int | None = None, overwrite: bool = False, plain: bool = False,
              progress: bool = True) -> pathlib.Path:
    """Writes a synthetic data set in RHD's layout.

    Args:
      out: the folder that will hold ``RHD_published_v2/`` (RHD's manual_dir).
      num_train: frames in ``training`` (≥ 1).
      num_eval: frames in ``evaluation`` (≥ 1).
      seed: the data set's seed; frame i of a split depends only on (seed, split, i).
      workers: processes (None → all cores).
      overwrite: replace a non-empty ``out``.
      plain: smooth backgrounds and no sensor noise (small files, for dummy data).
      progress: show tqdm progress bars.

    Returns:
      The path of ``out``.
    """
    counts = {"train": output.check_count("--num-train", num_train),
              "eval": output.check_count("--num-eval", num_eval)}
    out = pathlib.Path(out)
    with output.atomic_output_dir(out, overwrite) as temporary:
        for split, folder_name in SPLITS.items():
            folder = temporary / "RHD_published_v2" / folder_name
            for kind in ("color", "mask", "depth"):
                (folder / kind).mkdir(parents=True)
            jobs = [(str(folder), seed, split, i, plain) for i in range(counts[split])]
            results = output.run_jobs(_write_frame, jobs, workers,
                                      description=f"RHD {folder_name}", progress=progress)
            # Fresh keys and float32 arrays: ones that came back from worker processes are
            # distinct objects (key strings, dtypes), which would change the pickle's memo
            # and so its bytes.
            annotations = {int(index): {key: np.asarray(annotation[key]).astype(np.float32)
                                        for key in ANNOTATION_KEYS}
                           for index, annotation in results}
            with open(folder / f"anno_{folder_name}.pickle", "wb") as f:
                pickle.dump(annotations, f, protocol=2)
    return out


def read_annotations(path: str | os.PathLike) -> dict[int, dict[str, np.ndarray]]:
    """Loads an ``anno_<set>.pickle`` (a dict frame index → annotation)."""
    with open(path, "rb") as f:
        return pickle.load(f)
