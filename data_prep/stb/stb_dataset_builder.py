"""Stereo Hand Pose Tracking Benchmark (STB; Zhang et al., ICIP 2017), SK camera, as TFDS.

One example per SK frame (RealSense F200 colour + depth), processed by
:mod:`data_prep.features` like RHD. STB-specific steps:

* labels: ``handPara`` [3, 21, N] mm in the depth camera's frame, STB joint order → colour
  frame (:func:`handvae.ops.camera.stb_depth_to_color`) → RHD order
  (:data:`handvae.ops.skeleton.STB_TO_RHD`) → the palm centre replaced by a wrist
  (:func:`handvae.ops.skeleton.stb_palm_to_wrist`, Ge et al. CVPR 2019) → metres;
* STB has no masks: the hand is the set of depth points (back-projected with the depth camera,
  moved to the colour frame) within ``HAND_RADIUS_MM`` of a bone of the labelled skeleton;
  the crop box comes from those points projected into the colour image;
* STB shows left hands only; all are mirrored to right hands (``side`` = 0 records it).

Splits follow the hand3d protocol: ``test`` = B1Counting + B1Random, ``validation`` = B6Random
(held out for model selection), ``train`` = the nine other sequences. Configs ``real`` and
``synthetic`` (``python -m data_prep.synthetic --format stb``), and ``*_plain`` variants without
view correction.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import scipy.io
import tensorflow_datasets as tfds
from etils import epath

from data_prep import features as feature_lib
from handvae.ops import camera, skeleton

log = logging.getLogger(__name__)

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
STB cannot be downloaded by code.
1. Open https://sites.google.com/site/zhjw1988/ (Stereo Hand Pose Tracking Benchmark) and
   download the image archives (B1Counting ... B6Random) and labels.zip.
2. Extract them so that one folder holds images/ and labels/:
   <manual_dir>/images/B1Counting/SK_color_0.png, SK_depth_0.png, ...
   <manual_dir>/labels/B1Counting_SK.mat, ...
3. Point manual_dir at that folder (the one that CONTAINS images/ and labels/).
4. Build: python -m data_prep.build --dataset stb --config real --manual_dir <manual_dir>
   --data_dir data/tfds
For the synthetic stand-in, write the same layout with
   python -m data_prep.synthetic --format stb --out data/synthetic/stb
and build with --config synthetic --manual_dir data/synthetic/stb.
"""

TEST_SEQUENCES = ("B1Counting", "B1Random")
ALL_SEQUENCES = tuple(f"B{b}{kind}" for b in range(1, 7) for kind in ("Counting", "Random"))
HAND_RADIUS_MM = 20.0      # depth points this close to a bone are "hand"
BOX_MARGIN_PX = 40         # depth-image search window around the projected keypoints
LEFT = 0
VALIDATION_SEQUENCE = "B6Random"   # the held-out training sequence
VALIDATION_SHARE = 0.05            # only when there is a single training sequence


def labels_to_keypoints(hand_para: np.ndarray) -> np.ndarray:
    """STB ``handPara`` → keypoints in RHD order, colour-camera frame, metres.

    Args:
      hand_para: [3, 21, N] millimetres, STB order (palm centre first), depth-camera frame.

    Returns:
      [N, 21, 3] metres, RHD order, joint 0 the wrist estimated from the palm centre.
    """
    hand_para = np.asarray(hand_para, np.float64)
    if hand_para.ndim != 3 or hand_para.shape[:2] != (3, skeleton.NUM_JOINTS):
        raise ValueError(f"handPara must be [3, 21, N], got {hand_para.shape}")
    stb_order = camera.stb_depth_to_color(np.transpose(hand_para, (2, 1, 0)))
    return skeleton.stb_palm_to_wrist(stb_order[:, skeleton.STB_TO_RHD]) / 1000.0


def decode_depth(depth_rgb: np.ndarray) -> np.ndarray:
    """STB depth PNG [H, W, ≥2] uint8 → [H, W] float32 millimetres (R + 256·G; 0 = none)."""
    depth_rgb = np.asarray(depth_rgb)
    if depth_rgb.ndim != 3 or depth_rgb.shape[-1] < 2:
        raise ValueError(f"STB depth must be an RGB image [H, W, 3], got {depth_rgb.shape}")
    return depth_rgb[..., 0].astype(np.float32) + 256.0 * depth_rgb[..., 1].astype(np.float32)


def hand_points_from_depth(depth_mm: np.ndarray, keypoints_color_m: np.ndarray,
                           radius_mm: float = HAND_RADIUS_MM) -> np.ndarray:
    """Segments the hand in an STB depth map by distance to the labelled skeleton.

    Args:
      depth_mm: [H, W] depth-camera depth, millimetres (0 = no measurement).
      keypoints_color_m: [21, 3] RHD-order keypoints, colour frame, metres.
      radius_mm: a point within this distance of a bone belongs to the hand.

    Returns:
      [P, 3] hand points in the colour-camera frame, metres.
    """
    keypoints_depth_mm = camera.stb_color_to_depth(1000.0 * keypoints_color_m)
    uv = camera.project(keypoints_depth_mm, camera.STB_SK_DEPTH_K)
    height, width = depth_mm.shape
    lo = np.clip(np.floor(uv.min(0)) - BOX_MARGIN_PX, 0, [width, height]).astype(int)
    hi = np.clip(np.ceil(uv.max(0)) + BOX_MARGIN_PX + 1, 0, [width, height]).astype(int)
    window = np.zeros_like(depth_mm, dtype=bool)
    window[lo[1]:hi[1], lo[0]:hi[0]] = True
    z = keypoints_depth_mm[:, 2]
    window &= (depth_mm > z.min() - 3 * radius_mm) & (depth_mm < z.max() + 3 * radius_mm)
    points_depth = camera.depth_to_points(depth_mm, camera.STB_SK_DEPTH_K, window)
    points_color = camera.stb_depth_to_color(points_depth)
    near = feature_lib.points_near_skeleton(points_color, 1000.0 * keypoints_color_m, radius_mm)
    return points_color[near] / 1000.0


def frame_example(key: str, image: np.ndarray, depth_mm: np.ndarray | None,
                  keypoints_color_m: np.ndarray, *,
                  context_size: int = feature_lib.CONTEXT_SIZE, view_correction: bool = True,
                  strict: bool = True) -> dict[str, np.ndarray]:
    """One STB SK frame → one example (pure; no file access).

    Args:
      key: example key, e.g. ``"B1Counting/0042"``.
      image: [480, 640, 3] uint8 colour image.
      depth_mm: [480, 640] depth-camera depth, millimetres; None if unreadable (test frames).
      keypoints_color_m: [21, 3] from :func:`labels_to_keypoints`.
      context_size: stored image side C, pixels.
      view_correction, strict: see :func:`data_prep.features.process_frame`.

    Raises:
      features.SkipFrame: (strict) too few hand points, keypoints outside the image.
    """
    if depth_mm is None or not np.isfinite(keypoints_color_m).all():
        hand_points = np.zeros((0, 3))
    else:
        hand_points = hand_points_from_depth(depth_mm, keypoints_color_m)
    hand_uv = camera.project(hand_points, camera.STB_SK_COLOR_K) if len(hand_points) else \
        np.zeros((0, 2))
    example = feature_lib.process_frame(
        key=key, image=image, K=camera.STB_SK_COLOR_K, keypoints_3d=keypoints_color_m,
        hand_points=hand_points, hand_uv=hand_uv, mirror=True, context_size=context_size,
        view_correction=view_correction, strict=strict)
    example["side"] = np.int32(LEFT)
    example["frame"] = key
    return example


def load_frame(task: feature_lib.FrameTask, view_correction: bool = True
               ) -> dict[str, np.ndarray]:
    """Reads and processes one STB frame (runs in a build worker; see ``frame_tasks``)."""
    folder, index, keypoints = task.payload
    folder = epath.Path(folder)
    image = feature_lib.read_png(folder / f"SK_color_{index}.png")[..., :3]
    try:
        depth = decode_depth(feature_lib.read_png(folder / f"SK_depth_{index}.png"))
    except (feature_lib.SkipFrame, ValueError) as e:
        if task.strict:
            raise feature_lib.SkipFrame(f"{task.key}: {e}", "missing or bad depth") from None
        log.warning("STB: test frame %s kept without depth points: %s", task.key, e)
        depth = None
    return frame_example(task.key, image, depth, keypoints, view_correction=view_correction,
                         strict=task.strict)


def frame_tasks(manual_dir) -> tuple[dict[str, list[feature_lib.FrameTask]], dict[str, dict],
                                     list[epath.Path]]:
    """Every STB SK frame as a task, by split, in sorted key order.

    Splits (hand3d protocol): ``test`` = B1Counting + B1Random (``strict=False``);
    ``validation`` = the held-out training sequence ``VALIDATION_SEQUENCE`` (or, if absent,
    the last training sequence in sorted order; ``strict=False``); ``train`` = the others. With
    a single training sequence (tiny synthetic sets) validation is a fixed
    ``VALIDATION_SHARE`` of its frames (:func:`data_prep.features.validation_keys`).

    Returns:
      (tasks by split; per split ``{"defined": n, "skipped": {}}``; the label files).

    Raises:
      FileNotFoundError: ``manual_dir`` is not an STB folder.
    """
    root = epath.Path(manual_dir)
    labels = root / "labels"
    found = sorted(p.name[:-len("_SK.mat")] for p in labels.glob("*_SK.mat")) \
        if labels.exists() else []
    if not found:
        raise FileNotFoundError(
            f"STB: expected label files such as {labels / 'B1Counting_SK.mat'} and images "
            f"under {root / 'images'}; none found, so manual_dir={root} is not an STB "
            "folder.\n" + MANUAL_DOWNLOAD_INSTRUCTIONS)
    missing = sorted(set(ALL_SEQUENCES) - set(found))
    if missing:
        log.warning("STB: sequences %s are missing under %s", missing, labels)
    test = [s for s in found if s in TEST_SEQUENCES]
    train = [s for s in found if s not in TEST_SEQUENCES]
    if not test or not train:
        raise FileNotFoundError(
            f"STB: need label files of both splits under {labels} (test: {TEST_SEQUENCES}, "
            f"train: the others); found {found}.\n" + MANUAL_DOWNLOAD_INSTRUCTIONS)
    if len(train) >= 2:
        held_out = VALIDATION_SEQUENCE if VALIDATION_SEQUENCE in train else train[-1]
        splits = {"train": [s for s in train if s != held_out], "validation": [held_out],
                  "test": test}
    else:   # a tiny synthetic set with one training sequence: hold out a share of its frames
        log.warning("STB: only one training sequence (%s); validation holds out %.0f %% of its "
                    "frames instead of a sequence", train[0], 100 * VALIDATION_SHARE)
        splits = {"train": train, "validation": [], "test": test}
    tasks: dict[str, list[feature_lib.FrameTask]] = {}
    files = []
    for split, sequences in splits.items():
        tasks[split] = tasks.get(split, [])
        for sequence in sequences:
            label_file = labels / f"{sequence}_SK.mat"
            files.append(label_file)
            with label_file.open("rb") as f:
                mat = scipy.io.loadmat(f)
            if "handPara" not in mat:
                raise ValueError(f"{label_file}: no 'handPara' variable (found "
                                 f"{sorted(k for k in mat if not k.startswith('__'))})")
            keypoints = labels_to_keypoints(mat["handPara"])
            folder = str(root / "images" / sequence)
            tasks[split].extend(
                feature_lib.FrameTask(key=f"{sequence}/{index:04d}", split=split,
                                      strict=split == "train",
                                      payload=(folder, index, keypoints[index]))
                for index in range(len(keypoints)))
        if len(train) == 1 and split == "train":
            held = feature_lib.validation_keys([t.key for t in tasks[split]], VALIDATION_SHARE)
            tasks["validation"] = [dataclasses.replace(t, split="validation", strict=False)
                                   for t in tasks[split] if t.key in held]
            tasks[split] = [t for t in tasks[split] if t.key not in held]
        tasks[split].sort(key=lambda t: t.key)
    counts = {split: {"defined": len(t), "skipped": {}} for split, t in tasks.items()}
    return tasks, counts, files


class Builder(tfds.core.GeneratorBasedBuilder):
    """STB (SK camera); configs ``real``, ``synthetic`` and their ``*_plain`` variants."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: view-corrected crops, surface point pools.",
        "2.0.0": "512-px JPEG image of a window 2× the crop box (K_image, crop_side), float16 "
                 "points (≤ 1024), a validation split (sequence B6Random), test frames never "
                 "skipped, *_plain configs without view correction.",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    BUILDER_CONFIGS = feature_lib.hand_configs(
        real="The published STB (manual download).",
        synthetic="STB-format data from data_prep.synthetic.")
    DEFAULT_CONFIG_NAME = "real"
    frame_tasks = staticmethod(frame_tasks)
    load_frame = staticmethod(load_frame)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=feature_lib.example_features(),
            supervised_keys=None,
            homepage="https://sites.google.com/site/zhjw1988/",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        tasks, _, _ = frame_tasks(dl_manager.manual_dir)
        return {split: self._generate_examples(split_tasks)
                for split, split_tasks in tasks.items()}

    def _generate_examples(self, tasks: list[feature_lib.FrameTask]):
        return feature_lib.generate_stored_examples(
            tasks, load_frame, self.builder_config.view_correction, "STB")
