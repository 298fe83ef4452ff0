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


def frame_example(key: str, image: np.ndarray, depth: np.ndarray, mask: np.ndarray,
                  annotation: dict, crop_size: int = feature_lib.CROP_SIZE
                  ) -> dict[str, np.ndarray]:
    """One RHD frame → one example (pure; no file access).

    Args:
      key: example key, e.g. ``"training/00042"``.
      image: [H, W, 3] uint8 colour image.
      depth: [H, W] float depth, metres (see :func:`decode_depth`).
      mask: [H, W] segmentation ids.
      annotation: ``{'xyz': [42, 3] m, 'uv_vis': [42, 3], 'K': [3, 3]}`` (0–20 left hand,
        21–41 right hand, RHD joint order).
      crop_size: stored crop side, pixels.

    Returns:
      The example dict (see :func:`data_prep.features.process_frame`) plus ``side``, ``frame``.

    Raises:
      features.SkipFrame: empty mask, too few depth points, keypoints outside the image.
    """
    xyz = np.asarray(annotation["xyz"], np.float64)
    uv_vis = np.asarray(annotation["uv_vis"], np.float64)
    K = np.asarray(annotation["K"], np.float64)
    if xyz.shape != (2 * NUM_KEYPOINTS, 3) or uv_vis.shape != (2 * NUM_KEYPOINTS, 3) \
            or K.shape != (3, 3):
        raise feature_lib.SkipFrame(
            f"{key}: annotation shapes xyz {xyz.shape}, uv_vis {uv_vis.shape}, K {K.shape}; "
            "expected (42, 3), (42, 3), (3, 3)")
    if image.shape[:2] != depth.shape or depth.shape != mask.shape:
        raise feature_lib.SkipFrame(f"{key}: colour {image.shape}, depth {depth.shape} and "
                                    f"mask {mask.shape} sizes differ")
    side, hand_mask = dominant_hand(mask)
    hand_mask &= np.isfinite(depth) & (depth > 0)
    joints = slice(0, NUM_KEYPOINTS) if side == LEFT else slice(NUM_KEYPOINTS, None)
    v, u = np.nonzero(hand_mask)
    example = feature_lib.process_frame(
        key=key, image=image, K=K, keypoints_3d=xyz[joints],
        hand_points=camera.depth_to_points(depth, K, hand_mask),
        hand_uv=np.stack([u, v], -1), visible=uv_vis[joints, 2] > 0.5,
        mirror=side == LEFT, crop_size=crop_size)
    example["side"] = np.int32(side)
    example["frame"] = key
    return example


class Builder(tfds.core.GeneratorBasedBuilder):
    """RHD, one example per frame (dominant hand); configs ``real`` and ``synthetic``."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: view-corrected crops, surface point pools."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="real", description="The published RHD (manual download)."),
        tfds.core.BuilderConfig(
            name="synthetic", description="RHD-format data from data_prep.synthetic."),
    ]
    DEFAULT_CONFIG_NAME = "real"

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
        root = epath.Path(dl_manager.manual_dir) / DATA_FOLDER
        for folder in SPLITS.values():
            expected = root / folder / f"anno_{folder}.pickle"
            if not expected.exists():
                raise FileNotFoundError(
                    f"RHD: expected the annotation file {expected}, which does not exist; "
                    f"manual_dir={dl_manager.manual_dir} is not an RHD folder.\n"
                    + MANUAL_DOWNLOAD_INSTRUCTIONS)
        return {split: self._generate_examples(root / folder)
                for split, folder in SPLITS.items()}

    def _generate_examples(self, folder: epath.Path):
        with (folder / f"anno_{folder.name}.pickle").open("rb") as f:
            annotations = safe_pickle.load(f)
        if not isinstance(annotations, dict):
            raise ValueError(f"{folder}/anno_{folder.name}.pickle: expected a dict frame → "
                             f"annotation, got {type(annotations).__name__}")
        skipped = 0
        for frame in sorted(annotations, key=int):
            name = f"{int(frame):05d}.png"
            key = f"{folder.name}/{int(frame):05d}"
            try:
                image = feature_lib.read_png(folder / "color" / name)[..., :3]
                depth = decode_depth(feature_lib.read_png(folder / "depth" / name))
                mask = feature_lib.read_png(folder / "mask" / name)
                if mask.ndim == 3:
                    mask = mask[..., 0]
                yield key, frame_example(key, image, depth, mask, annotations[frame])
            except feature_lib.SkipFrame as e:
                skipped += 1
                log.warning("RHD: skipping %s (%s/*/%s): %s", key, folder, name, e)
        log.log(logging.WARNING if skipped else logging.INFO,
                "RHD %s: %d frames, %d skipped", folder.name, len(annotations), skipped)
