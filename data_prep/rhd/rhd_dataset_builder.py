"""Rendered Hand Pose Dataset (RHD; Zimmermann & Brox, ICCV 2017) as a TFDS builder.

One example per frame for the dominant hand (the hand with more mask pixels), processed by
:mod:`data_prep.features` (crop, view correction, left→right mirroring, normalisation, surface
points). Configs: ``real`` (the published data) and ``synthetic`` (RHD-format data written by
``python -m data_prep.synthetic --format rhd``); same code, separate caches. Files are
array_record and are read back without TensorFlow (``builder.as_data_source``)::

    python -m data_prep.build --dataset rhd --config real --manual_dir ~/data/rhd \\
        --data_dir data/tfds
"""

from __future__ import annotations

import logging
import os
import pickle

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from data_prep import features as feature_lib
from data_prep import safe_pickle
from handvae.ops import camera

log = logging.getLogger(__name__)

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
RHD cannot be downloaded by code (its licence asks for a manual download).
1. Open https://lmb.informatik.uni-freiburg.de/resources/datasets/RenderedHandposeDataset.en.html
   and download RHD_v1-1.zip (about 11 GB).
2. Unzip it; it creates a folder RHD_published_v2/ holding training/ and evaluation/.
3. Point manual_dir at the folder that CONTAINS RHD_published_v2/, so that
   <manual_dir>/RHD_published_v2/training/anno_training.pickle and
   <manual_dir>/RHD_published_v2/evaluation/anno_evaluation.pickle exist.
4. Build: python -m data_prep.build --dataset rhd --config real --manual_dir <manual_dir>
   --data_dir data/tfds
For the synthetic stand-in, write the same layout with
   python -m data_prep.synthetic --format rhd --out data/synthetic/rhd
and build with --config synthetic --manual_dir data/synthetic/rhd.
"""

DATA_FOLDER = "RHD_published_v2"
SPLITS = {"train": "training", "test": "evaluation"}
NUM_KEYPOINTS = feature_lib.NUM_KEYPOINTS
LEFT_IDS = (2, 17)    # inclusive mask-id range of the left hand
RIGHT_IDS = (18, 33)  # inclusive mask-id range of the right hand
LEFT, RIGHT = 0, 1
VALIDATION_SHARE = 0.05   # held-out share of training/ (2,063 of 41,258 frames)


def decode_depth(depth_rgb: np.ndarray) -> np.ndarray:
    """RHD depth PNG [H, W, ≥2] uint8 → [H, W] float32 metres: (R·256 + G) / 65535 · 5."""
    depth_rgb = np.asarray(depth_rgb)
    if depth_rgb.ndim != 3 or depth_rgb.shape[-1] < 2:
        raise ValueError(f"RHD depth must be an RGB image [H, W, 3], got {depth_rgb.shape}")
    raw = depth_rgb[..., 0].astype(np.float32) * 256 + depth_rgb[..., 1].astype(np.float32)
    return raw / 65535.0 * 5.0


def dominant_hand(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """The hand with more mask pixels.

    Args:
      mask: [H, W] RHD segmentation ids (0 background, 1 body, 2–17 left, 18–33 right).

    Returns:
      (side: 0 left / 1 right, [H, W] bool mask of that hand). Ties go to the right hand.

    Raises:
      features.SkipFrame: no hand pixel at all.
    """
    mask = np.asarray(mask)
    left = (mask >= LEFT_IDS[0]) & (mask <= LEFT_IDS[1])
    right = (mask >= RIGHT_IDS[0]) & (mask <= RIGHT_IDS[1])
    n_left, n_right = int(left.sum()), int(right.sum())
    if n_left == 0 and n_right == 0:
        raise feature_lib.SkipFrame("empty hand mask")
    return (LEFT, left) if n_left > n_right else (RIGHT, right)


def _hand_from_visibility(uv_vis: np.ndarray) -> int:
    """Fallback side for a frame without a usable mask: the hand with more visible keypoints."""
    n_left = int((uv_vis[:NUM_KEYPOINTS, 2] > 0.5).sum())
    n_right = int((uv_vis[NUM_KEYPOINTS:, 2] > 0.5).sum())
    return LEFT if n_left > n_right else RIGHT


def frame_example(key: str, image: np.ndarray, depth: np.ndarray | None,
                  mask: np.ndarray | None, annotation: dict, *,
                  context_size: int = feature_lib.CONTEXT_SIZE, view_correction: bool = True,
                  strict: bool = True) -> dict[str, np.ndarray]:
    """One RHD frame → one example (pure; no file access).

    Args:
      key: example key, e.g. ``"training/00042"``.
      image: [H, W, 3] uint8 colour image.
      depth: [H, W] float depth, metres (see :func:`decode_depth`); None if unreadable.
      mask: [H, W] segmentation ids; None if unreadable.
      annotation: ``{'xyz': [42, 3] m, 'uv_vis': [42, 3], 'K': [3, 3]}`` (0–20 left hand,
        21–41 right hand, RHD joint order).
      context_size: stored image side C, pixels.
      view_correction: see :func:`data_prep.features.process_frame`.
      strict: False for test frames: an empty or unreadable mask falls back to the hand with
        more visible keypoints and a crop box from its keypoints; missing depth gives no
        points.

    Returns:
      The example dict (see :func:`data_prep.features.process_frame`) plus ``side``, ``frame``.

    Raises:
      features.SkipFrame: (strict) empty mask, too few depth points, keypoints outside the
        image; (always) a malformed annotation.
    """
    xyz = np.asarray(annotation["xyz"], np.float64)
    uv_vis = np.asarray(annotation["uv_vis"], np.float64)
    K = np.asarray(annotation["K"], np.float64)
    if xyz.shape != (2 * NUM_KEYPOINTS, 3) or uv_vis.shape != (2 * NUM_KEYPOINTS, 3) \
            or K.shape != (3, 3):
        raise feature_lib.SkipFrame(
            f"{key}: annotation shapes xyz {xyz.shape}, uv_vis {uv_vis.shape}, K {K.shape}; "
            "expected (42, 3), (42, 3), (3, 3)", "malformed annotation")
    if depth is None or mask is None:
        if strict:
            raise feature_lib.SkipFrame(f"{key}: no depth map or mask", "missing depth or mask")
    elif image.shape[:2] != depth.shape or depth.shape != mask.shape:
        raise feature_lib.SkipFrame(f"{key}: colour {image.shape}, depth {depth.shape} and "
                                    f"mask {mask.shape} sizes differ", "image sizes differ")
    try:
        if mask is None:
            raise feature_lib.SkipFrame("no mask", "empty hand mask")
        side, hand_mask = dominant_hand(mask)
    except feature_lib.SkipFrame as e:
        if strict:
            raise feature_lib.SkipFrame(f"{key}: {e}", e.reason) from None
        side, hand_mask = _hand_from_visibility(uv_vis), np.zeros(image.shape[:2], bool)
    if depth is not None:
        hand_mask &= np.isfinite(depth) & (depth > 0)
        points = camera.depth_to_points(depth, K, hand_mask)
    else:
        points = np.zeros((0, 3))
    joints = slice(0, NUM_KEYPOINTS) if side == LEFT else slice(NUM_KEYPOINTS, None)
    v, u = np.nonzero(hand_mask)
    example = feature_lib.process_frame(
        key=key, image=image, K=K, keypoints_3d=xyz[joints], hand_points=points,
        hand_uv=np.stack([u, v], -1), visible=uv_vis[joints, 2],
        mirror=side == LEFT, context_size=context_size, view_correction=view_correction,
        strict=strict)
    example["side"] = np.int32(side)
    example["frame"] = key
    return example


def check_annotation(frame, annotation) -> tuple[int, dict]:
    """Validates one entry of an RHD annotation pickle.

    Returns:
      (frame number, annotation with float64 arrays).

    Raises:
      features.SkipFrame: non-integer key, None / not a dict, a missing key, wrong shapes,
        NaN or infinite keypoints, intrinsics or visibility.
    """
    if isinstance(frame, bool) or not isinstance(frame, (int, np.integer, str)):
        raise feature_lib.SkipFrame(f"frame key {frame!r} is not an integer",
                                    "non-integer frame key")
    try:
        number = int(frame)
    except ValueError:
        raise feature_lib.SkipFrame(f"frame key {frame!r} is not an integer",
                                    "non-integer frame key") from None
    if number < 0:
        raise feature_lib.SkipFrame(f"frame key {frame!r} is negative", "non-integer frame key")
    if not isinstance(annotation, dict):
        raise feature_lib.SkipFrame(f"frame {frame!r}: annotation is "
                                    f"{type(annotation).__name__}, not a dict",
                                    "annotation not a dict")
    missing = [k for k in ("xyz", "uv_vis", "K") if k not in annotation]
    if missing:
        raise feature_lib.SkipFrame(f"frame {frame!r}: annotation lacks {missing}",
                                    "missing annotation key")
    try:
        arrays = {k: np.asarray(annotation[k], np.float64) for k in ("xyz", "uv_vis", "K")}
    except (TypeError, ValueError) as e:
        raise feature_lib.SkipFrame(f"frame {frame!r}: annotation is not numeric ({e})",
                                    "malformed annotation") from None
    shapes = {"xyz": (42, 3), "uv_vis": (42, 3), "K": (3, 3)}
    wrong = {k: v.shape for k, v in arrays.items() if v.shape != shapes[k]}
    if wrong:
        raise feature_lib.SkipFrame(f"frame {frame!r}: annotation shapes {wrong}, expected "
                                    f"{shapes}", "malformed annotation")
    if not (np.isfinite(arrays["K"]).all() and np.isfinite(arrays["xyz"]).all()):
        raise feature_lib.SkipFrame(f"frame {frame!r}: non-finite keypoints or intrinsics",
                                    "non-finite keypoints")
    if not np.isfinite(arrays["uv_vis"]).all():
        raise feature_lib.SkipFrame(f"frame {frame!r}: non-finite uv_vis (visibility)",
                                    "non-finite visibility")
    return number, arrays


def _read_optional(path: epath.Path, strict: bool) -> np.ndarray | None:
    try:
        return feature_lib.read_png(path)
    except feature_lib.SkipFrame:
        if strict:
            raise
        log.warning("RHD: test frame kept without %s (unreadable)", path)
        return None


def load_frame(task: feature_lib.FrameTask, view_correction: bool = True
               ) -> dict[str, np.ndarray]:
    """Reads and processes one RHD frame (runs in a build worker; see ``frame_tasks``)."""
    folder, number, annotation = task.payload
    folder = epath.Path(folder)
    name = f"{number:05d}.png"
    try:
        image = feature_lib.read_png(folder / "color" / name)[..., :3]
        depth = _read_optional(folder / "depth" / name, task.strict)
        depth = None if depth is None else decode_depth(depth)
        mask = _read_optional(folder / "mask" / name, task.strict)
        if mask is not None and mask.ndim == 3:
            mask = mask[..., 0]
        return frame_example(task.key, image, depth, mask, annotation,
                             view_correction=view_correction, strict=task.strict)
    except ValueError as e:
        if isinstance(e, feature_lib.SkipFrame):
            raise
        raise feature_lib.SkipFrame(f"{task.key} ({folder}/*/{name}): {e}",
                                    "malformed raw file") from None


def frame_tasks(manual_dir, validation_share: float = VALIDATION_SHARE
                ) -> tuple[dict[str, list[feature_lib.FrameTask]], dict[str, dict],
                           list[epath.Path]]:
    """Every RHD frame as a task, by split, in sorted key order; bad annotations left out.

    Splits: ``test`` = evaluation/ (all frames, ``strict=False``); ``validation`` = a fixed
    ``validation_share`` of training/ (:func:`data_prep.features.validation_keys`,
    ``strict=False``); ``train`` = the rest.

    Returns:
      (tasks by split; per split ``{"defined": n, "skipped": {reason: count}}`` for the
      annotations left out; the annotation files (for the build manifest)).

    Raises:
      FileNotFoundError: ``manual_dir`` is not an RHD folder (the message says what to do).
    """
    root = epath.Path(manual_dir) / DATA_FOLDER
    for folder in SPLITS.values():
        expected = root / folder / f"anno_{folder}.pickle"
        if not expected.exists():
            raise FileNotFoundError(
                f"RHD: expected the annotation file {expected}, which does not exist; "
                f"manual_dir={manual_dir} is not an RHD folder.\n"
                + MANUAL_DOWNLOAD_INSTRUCTIONS)
    tasks: dict[str, list[feature_lib.FrameTask]] = {"train": [], "validation": [], "test": []}
    counts = {split: {"defined": 0, "skipped": {}} for split in tasks}
    files = []
    for split, folder_name in SPLITS.items():
        folder = root / folder_name
        path = folder / f"anno_{folder_name}.pickle"
        files.append(path)
        annotations = _load_annotations(path)
        if not isinstance(annotations, dict):
            raise ValueError(f"{path}: expected a dict frame → annotation, got "
                             f"{type(annotations).__name__}")
        good = {}
        for frame, annotation in annotations.items():
            try:
                number, arrays = check_annotation(frame, annotation)
                if number in good:
                    raise feature_lib.SkipFrame(f"frame {frame!r} duplicates frame {number}",
                                                "duplicate frame key")
                good[number] = arrays
            except feature_lib.SkipFrame as e:
                target = "test" if split == "test" else "train"
                skipped = counts[target]["skipped"]
                skipped[e.reason] = skipped.get(e.reason, 0) + 1
                log.warning("RHD: skipping an annotation of %s: %s", path, e)
        keys = {f"{folder_name}/{n:05d}": n for n in good}
        held_out = (feature_lib.validation_keys(sorted(keys), validation_share)
                    if split == "train" else set())
        for key in sorted(keys):
            target = "validation" if key in held_out else split
            tasks[target].append(feature_lib.FrameTask(
                key=key, split=target, strict=target == "train",
                payload=(str(folder), keys[key], good[keys[key]])))
        # annotations that failed the check count as defined frames of train or test
        counts["test" if split == "test" else "train"]["defined"] += \
            len(annotations) - len(good)
    for split in tasks:
        counts[split]["defined"] += len(tasks[split])
    return tasks, counts, files


# What a damaged pickle raises: not a pickle, truncated (at any byte), or empty.
_UNREADABLE = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
               IndexError, KeyError, MemoryError, UnicodeDecodeError)


def _load_annotations(path: epath.Path):
    """``safe_pickle.load`` of ``path``; a ValueError naming the file when it is unreadable."""
    with path.open("rb") as f:
        try:
            return safe_pickle.load(f)
        except _UNREADABLE as error:
            reason = "the file is empty" if os.path.getsize(os.fspath(path)) == 0 else (
                f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
            raise ValueError(f"RHD annotation file {path} cannot be read as a pickle "
                             f"({reason.rstrip(': ')}); it is damaged or not RHD's: download "
                             "or generate it again") from None


class Builder(tfds.core.GeneratorBasedBuilder):
    """RHD, one example per frame (dominant hand); configs ``real``, ``synthetic``, and their
    ``*_plain`` variants (no view correction)."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: view-corrected crops, surface point pools.",
        "2.0.0": "512-px JPEG image of a window 2× the crop box (K_image, crop_side), float16 "
                 "points (≤ 1024), a validation split (5 % of training/), test frames never "
                 "skipped, *_plain configs without view correction.",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    BUILDER_CONFIGS = feature_lib.hand_configs(
        real="The published RHD (manual download).",
        synthetic="RHD-format data from data_prep.synthetic.")
    DEFAULT_CONFIG_NAME = "real"
    frame_tasks = staticmethod(frame_tasks)
    load_frame = staticmethod(load_frame)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=feature_lib.example_features(),
            supervised_keys=None,
            homepage="https://lmb.informatik.uni-freiburg.de/resources/datasets/"
                     "RenderedHandposeDataset.en.html",
            # Stored in sorted key order: "the first m % of the train split" is well defined.
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        tasks, _, _ = frame_tasks(dl_manager.manual_dir)
        return {split: self._generate_examples(split_tasks)
                for split, split_tasks in tasks.items()}

    def _generate_examples(self, tasks: list[feature_lib.FrameTask]):
        return feature_lib.generate_stored_examples(
            tasks, load_frame, self.builder_config.view_correction, "RHD")
