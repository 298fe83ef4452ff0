"""Build-time processing shared by the RHD and STB builders: one raw frame → one example.

Everything deterministic happens here, once, so the training pipeline only warps, samples and
batches:

1. the crop box: a square around the hand's pixels (mask or projected depth points) and its
   keypoints, enlarged by ``CROP_MARGIN``; the stored image shows a window ``CONTEXT_FACTOR``
   (2) × that box, centred on it, at ``CONTEXT_SIZE`` (512) px, so the 256-px crop is its
   central window and augmentation (scale ≤ 1.2, shift ±20 px, any rotation) stays inside it;
2. view correction (Li & Lee 2019): the camera frame is rotated so the ray through the box
   centre becomes the optical axis (+z); the image is rendered by the corresponding
   homography, i.e. it is what a virtual camera ``K_image`` (principal point at the image
   centre) pointed at the hand would see. With ``view_correction=False`` (``*_plain``
   configs) it is a plain scaled crop with ``K_image`` = that scaling ∘ K;
3. left hands are mirrored to right hands (u → C−1−u, x → −x; every length, hence every
   metric, is unchanged); the original side is recorded;
4. root (middle MCP) and scale (MCP→PIP of the middle finger), 3-D keypoints
   ``(P − root) / scale``, 2-D keypoints in stored-image pixels;
5. a pool of at most ``max_points`` hand-surface points back-projected from the depth map,
   rotated, mirrored and normalised like the keypoints;
6. storage (:func:`to_stored`): the image as JPEG bytes, the points as float16.

Training frames that would give a wrong example raise :class:`SkipFrame`; the builders count
and log them instead of crashing a long build. Test frames (``strict=False``) are never skipped
for image or depth reasons.

Stored example and build-time decisions (moved from WORKSPACE.md)

Stored example (version 2.0.0; `features.FEATURE_DOC`), as `source.decode_example` returns it:
`image` uint8 [512, 512, 3], a window 2× the hand's crop box centred on it, so the 256-px crop
is its central `crop_side` = 256 pixels and scale ≤ 1.2 + shift ±20 + any rotation stay inside
it; `K_image` [3, 3] (view-corrected: one focal length, principal point (255.5, 255.5));
`keypoints_2d` [21, 2] in those pixels; `keypoints_3d` [21, 3] (P − root)/scale; `visible`;
`root` [3] m; `scale` m; `points` float32 [M ≤ 1024, 3] (M = 0 possible for test frames);
`view_rotation` [3, 3] (I for `*_plain`); `side`; `frame` (str key). ~58 KB per example on
disk (1.0.0: ~176 KB), i.e. about 2.5 GB for the whole of RHD.

**Stored image: JPEG q90 (4:4:4) of a 512-px context window** (paper silent on storage).
Measured on 20 synthetic RHD frames (`/tmp/t3.py`-style probe, load ≈ 6 on 2 cores): PNG
215 KiB/image, 20.7 ms decode; JPEG q90 4:4:4 45.7 KiB, 4.0 ms, mean |error| 0.9 grey
levels; q90 4:2:0 30.8 KiB, 2.9 ms, 1.24. Points float16 (resolution ≤ 0.2 mm at hand
scale), at most 1,024 per frame (the paper samples 256 per step, Sec. 4.1).

**Context around the crop** (issue 10.5). The paper crops "the region containing hand ...
resized to 256 × 256" and augments "scaled randomly between [1, 1.2], translated [−20, 20]
pixels and rotated [−π, π]" (Sec. 4.1); a stored 256² crop would show black corners under
that warp. The stored image shows 2× the crop box (half-diagonal needed: 1.2·128·√2 + 20 ≈
237 px < 256).

**Validation split** (issue 10.2; the paper is silent on model selection). RHD (real and
synthetic): a fixed 5 % of training/ (the frames with the smallest CRC-32 of their key, at
least one; 2,063 of 41,258), so the selection does not depend on the frame order. STB: the
training sequence B6Random (1,500 frames); the paper "use[s] 10 sequences for training and
the other 2 for testing" (Sec. 5), so our train split has 9 (a set with a single training
sequence, e.g. `dummy_data`, holds out 5 % of its frames instead). Splits: train /
validation / test; keys sorted within each. Fewer than 2 training frames is an error.

**Test frames are never skipped** for image or depth reasons (issue 10.3): an empty or
unreadable mask falls back to the hand with more visible keypoints and a crop box from its
keypoints; too few depth points store an empty point set; keypoints off the image are kept
(invisible). Only a missing colour image or a malformed annotation (NaN, missing key) drops a
test frame, counted in `build_report.json` (defined vs stored).

**View correction can be turned off** (issue 10.4; Fig. 5 trains R2P "with both view
corrected and uncorrected data", Sec. 5.2): `*_plain` configs store a plain scaled crop with
`K_image` = scaling ∘ K (own principal point), 3-D quantities in the camera frame, the same
root/scale normalisation; `data.view_correction = False` selects them.
"""

from __future__ import annotations

import dataclasses
import logging
import io
import zlib

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from handvae.ops import camera, rotation, skeleton
from handvae.ops.image_warp import warp_perspective
from handvae.ops.view_crop import (  # noqa: F401 (re-exported: builders and tests use them)
    CROP_MARGIN,
    MIN_CROP_SIDE,
    crop_box,
    crop_homography,
    crop_intrinsics,
)

log = logging.getLogger(__name__)

CONTEXT_SIZE = 512       # stored image side C, pixels: a window 2× the crop box
CONTEXT_FACTOR = 2.0     # stored window side / crop box side
MAX_POINTS = 1024        # surface points kept per example (the pipeline samples 256 per step)
MIN_HAND_POINTS = 32     # fewer valid hand depth points → a training frame is skipped
JPEG_QUALITY = 90        # stored image encoding (see WORKSPACE.md "Stored examples")
NUM_KEYPOINTS = skeleton.NUM_JOINTS


class SkipFrame(ValueError):
    """A frame that cannot give a correct example (the message says why).

    ``reason`` is a short category for the build's per-reason counts (default: the message).
    """

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


@dataclasses.dataclass(frozen=True)
class FrameTask:
    """One raw frame to turn into one example (small and picklable: sent to build workers).

    ``key`` orders the split (stored in sorted key order); ``strict`` is False for evaluation
    frames (never skipped for image/depth reasons); ``payload`` is builder-specific.
    """
    key: str
    split: str
    strict: bool
    payload: tuple


@dataclasses.dataclass
class HandBuilderConfig(tfds.core.BuilderConfig):
    """A builder config: raw data kind (``real``/``synthetic``) and the view-correction switch.

    ``*_plain`` configs (``view_correction=False``) store a plain crop with the crop's own
    intrinsics, 3-D quantities in the camera frame (Fig. 5 of the paper: R2P without view
    correction).
    """
    view_correction: bool = True


def hand_configs(real: str, synthetic: str) -> list[HandBuilderConfig]:
    """``real``, ``synthetic``, ``real_plain``, ``synthetic_plain`` with these descriptions."""
    configs = []
    for name, description in (("real", real), ("synthetic", synthetic)):
        configs.append(HandBuilderConfig(name=name, description=description))
        configs.append(HandBuilderConfig(
            name=f"{name}_plain", view_correction=False,
            description=description + " Plain crops (no view correction)."))
    return configs


def validation_keys(keys: list[str], share: float) -> set[str]:
    """The held-out validation share of training ``keys``: a fixed pseudo-random subset.

    The keys are ranked by CRC-32 of the key (fixed, independent of order and of the worker
    count) and the first ``round(share · n)`` (at least 1 when n ≥ 2) are held out.
    """
    if not 0 < share < 1:
        raise ValueError(f"validation share must be in (0, 1), got {share}")
    count = len(keys)
    if count < 2:
        return set()
    num = max(1, round(share * count))
    return set(sorted(keys, key=lambda k: (zlib.crc32(k.encode()), k))[:num])


def plain_crop_transform(center: np.ndarray, side: float, crop_size: int) -> np.ndarray:
    """[3, 3] affine map source pixels → pixels of a plain (not view-corrected) crop.

    The square window of ``side`` px centred at ``center`` becomes ``crop_size`` px, its centre
    the image centre ``(crop_size − 1) / 2``.
    """
    s = crop_size / side
    c = (crop_size - 1) / 2
    return np.array([[s, 0.0, c - s * center[0]], [0.0, s, c - s * center[1]], [0.0, 0.0, 1.0]])


def _subsample_indices(count: int, max_count: int, key: str) -> np.ndarray:
    """Sorted indices of at most ``max_count`` of ``count`` items, fixed by ``key``."""
    if count <= max_count:
        return np.arange(count)
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    return np.sort(rng.choice(count, size=max_count, replace=False))


def process_frame(
    *,
    key: str,
    image: np.ndarray,
    K: np.ndarray,
    keypoints_3d: np.ndarray,
    hand_points: np.ndarray,
    hand_uv: np.ndarray,
    visible: np.ndarray | None = None,
    mirror: bool = False,
    context_size: int = CONTEXT_SIZE,
    max_points: int = MAX_POINTS,
    view_correction: bool = True,
    strict: bool = True,
) -> dict[str, np.ndarray]:
    """Turns one raw frame into an example (arrays; :func:`to_stored` encodes it).

    Args:
      key: the example's key (also seeds the point subsampling).
      image: [H, W, 3] uint8 colour image.
      K: [3, 3] colour-camera intrinsics, pixels.
      keypoints_3d: [21, 3] keypoints in RHD order, colour-camera frame, metres.
      hand_points: [P, 3] hand-surface points from depth, colour-camera frame, metres.
      hand_uv: [M, 2] colour-image pixels of the hand (for the crop box; may be empty).
      visible: optional [21] visibility flags (default all visible).
      mirror: True for a left hand: mirror it into a right hand.
      context_size: C, stored image side in pixels; it shows a window ``CONTEXT_FACTOR`` × the
        crop box, so the crop box is the central ``C / 2`` pixels.
      max_points: the most surface points kept.
      view_correction: True: render through the view-correcting rotation (Li & Lee 2019);
        False: a plain scaled crop, 3-D quantities in the camera frame (``view_rotation`` = I).
      strict: True (train/validation): frames that would give a doubtful example raise
        :class:`SkipFrame`. False (test): never skip for image/depth reasons: too few depth
        points store an empty point set; keypoints outside the image are kept (invisible).

    Returns:
      ``image`` [C, C, 3] uint8, ``K_image`` [3, 3], ``crop_side`` (C / 2), ``keypoints_3d``
      [21, 3], ``keypoints_2d`` [21, 2] stored-image pixels, ``visible`` [21], ``root`` [3] m,
      ``scale`` m, ``points`` [M ≤ max_points, 3], ``view_rotation`` [3, 3].

    Raises:
      SkipFrame: (strict) too few hand points, most keypoints outside the image, keypoints
        outside the crop; (always) non-finite annotation, a keypoint behind the camera,
        degenerate scale.
    """
    image = np.asarray(image)
    height, width = image.shape[:2]
    keypoints_3d = np.asarray(keypoints_3d, np.float64)
    hand_points = np.asarray(hand_points, np.float64).reshape(-1, 3)
    if keypoints_3d.shape != (skeleton.NUM_JOINTS, 3):
        raise ValueError(f"{key}: keypoints_3d must be [21, 3], got {keypoints_3d.shape}")
    if not np.isfinite(keypoints_3d).all() or not np.isfinite(K).all():
        raise SkipFrame(f"{key}: non-finite keypoints or intrinsics in the annotation",
                        "non-finite keypoints")
    if np.any(keypoints_3d[:, 2] <= 0):
        raise SkipFrame(f"{key}: a keypoint lies behind the camera", "keypoint behind camera")
    if len(hand_points) < MIN_HAND_POINTS:
        if strict:
            raise SkipFrame(f"{key}: only {len(hand_points)} hand depth points "
                            f"(< {MIN_HAND_POINTS})", "too few hand depth points")
        hand_points = hand_points[:0]
    keypoints_uv = camera.project(keypoints_3d, K)
    inside = ((keypoints_uv >= -0.5) & (keypoints_uv <= [width - 0.5, height - 0.5])).all(-1)
    # A hand cut by the image border (common in real RHD frames) is kept with the cut keypoints
    # marked invisible, as hand3d's evaluation does. A training frame whose annotation mostly
    # misses the picture cannot be trusted and is skipped; a test frame is kept.
    if strict and (~inside).sum() > skeleton.NUM_JOINTS // 2:
        raise SkipFrame(f"{key}: keypoints {np.flatnonzero(~inside).tolist()} lie outside the "
                        f"{width}x{height} image", "keypoints outside the image")

    center, side = crop_box(hand_uv, keypoints_uv)
    crop_side = context_size / CONTEXT_FACTOR
    if view_correction:
        view_rotation = rotation.view_correction_rotation(center, K)
        k_image = crop_intrinsics(K, CONTEXT_FACTOR * side, context_size)
        dst_to_src = crop_homography(K, view_rotation, k_image)
    else:
        view_rotation = np.eye(3)
        transform = plain_crop_transform(center, CONTEXT_FACTOR * side, context_size)
        k_image = transform @ K
        dst_to_src = np.linalg.inv(transform)
    crop = warp_perspective(image, dst_to_src, context_size)

    keypoints_c = keypoints_3d @ view_rotation.T
    points_c = hand_points @ view_rotation.T
    if mirror:
        crop = crop[:, ::-1]
        keypoints_c[:, 0] *= -1
        points_c[:, 0] *= -1
        k_image = k_image.copy()
        k_image[0, 1] = 0.0 - k_image[0, 1]
        k_image[0, 2] = context_size - 1 - k_image[0, 2]
    keypoints_2d = camera.project(keypoints_c, k_image)
    lo, hi = (context_size - crop_side) / 2 - 0.5, (context_size + crop_side) / 2 - 0.5
    if strict and not ((keypoints_2d >= lo) & (keypoints_2d <= hi)).all():
        raise SkipFrame(f"{key}: keypoints fall outside the crop box", "keypoints outside the crop")

    normalized, root, scale = skeleton.normalize_pose(keypoints_c)
    if not scale > 1e-6:
        raise SkipFrame(f"{key}: degenerate reference bone (scale {scale:.3g} m)",
                        "degenerate scale")
    points_c = points_c[_subsample_indices(len(points_c), max_points, key)]
    points = (points_c - root) / scale
    if visible is None:
        visible = np.ones(skeleton.NUM_JOINTS)
    visible = np.asarray(visible, np.float32).reshape(skeleton.NUM_JOINTS)
    if not np.isfinite(visible).all():
        raise SkipFrame(f"{key}: non-finite visibility flags", "non-finite visibility")
    visible = (visible > 0.5) * inside
    return {
        "image": np.ascontiguousarray(crop, dtype=np.uint8),
        "K_image": k_image.astype(np.float32),
        "crop_side": np.float32(crop_side),
        "keypoints_3d": normalized.astype(np.float32),
        "keypoints_2d": keypoints_2d.astype(np.float32),
        "visible": visible.astype(np.float32),
        "root": root.astype(np.float32),
        "scale": np.float32(scale),
        "points": points.astype(np.float32).reshape(-1, 3),
        "view_rotation": view_rotation.astype(np.float32),
    }


def encode_image(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """[H, W, 3] uint8 → JPEG bytes (4:4:4 chroma: keypoint colours stay sharp)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="JPEG", quality=quality,
                                                      subsampling=0)
    return buffer.getvalue()


def generate_stored_examples(tasks: list[FrameTask], load_frame, view_correction: bool,
                             dataset: str):
    """Yields ``(key, stored example)`` of each task: the builders' TFDS generator.

    TFDS's own writer (``_generate_examples``) is for small sets only (past 1 GB it spills to
    ``tf.io.gfile``); the TensorFlow-free build of any size is ``data_prep.build``.

    Args:
      tasks: the split's frames.
      load_frame: the builder's ``load_frame(task, view_correction) -> example``.
      view_correction: the builder config's switch.
      dataset: name for the log line of a skipped frame ("RHD", "STB").
    """
    for task in tasks:
        try:
            yield task.key, to_stored(load_frame(task, view_correction))
        except SkipFrame as e:
            log.warning("%s: skipping %s: %s", dataset, task.key, e)


def to_stored(example: dict) -> dict:
    """An example of :func:`process_frame` (plus ``side``, ``frame``) → its stored encoding:
    the image as JPEG bytes, the point set as float16 (see ``FEATURE_DOC``)."""
    stored = dict(example)
    stored["image"] = encode_image(example["image"])
    stored["points"] = np.asarray(example["points"], np.float16).reshape(-1, 3)
    stored["num_points"] = np.int32(len(stored["points"]))
    return stored


def points_near_skeleton(points: np.ndarray, keypoints_3d: np.ndarray, radius: float
                         ) -> np.ndarray:
    """Which points lie within ``radius`` of a bone of the hand skeleton.

    Used to segment STB's hand (it ships no masks): a depth point belongs to the hand when it is
    within ``radius`` of one of the 20 bones (segments between joints, RHD order) or of the
    palm (segments wrist→MCPs are bones already; the palm is covered by the radius).

    Args:
      points: [P, 3] points, same frame and unit as ``keypoints_3d``.
      keypoints_3d: [21, 3] keypoints in RHD order.
      radius: distance threshold, same unit.

    Returns:
      [P] bool.
    """
    points = np.asarray(points, np.float64)
    bones = np.asarray(skeleton.BONES)
    a = np.asarray(keypoints_3d, np.float64)[bones[:, 0]]    # [20, 3]
    ab = np.asarray(keypoints_3d, np.float64)[bones[:, 1]] - a
    near = np.zeros(len(points), bool)
    for start, direction in zip(a, ab):
        t = np.clip((points - start) @ direction / max(direction @ direction, 1e-12), 0, 1)
        near |= np.sum((points - start - t[:, None] * direction) ** 2, -1) <= radius ** 2
    return near


FEATURE_DOC = {
    "image": "JPEG bytes (quality 90, 4:4:4) of a uint8 [C, C, 3] image, C = 512: the "
             "(view-corrected, or plain for *_plain configs) rendering of a square window 2× the "
             "hand's crop box, centred on it; left hands mirrored to right. Decoded by "
             "handvae.data.source.decode_example",
    "K_image": "[3, 3] intrinsics of the stored image in its pixels (pixel centres at integers); "
               "view-corrected: one focal length, principal point ((C−1)/2, (C−1)/2)",
    "crop_side": "side, in stored-image pixels, of the hand's crop window (C/2 = 256), centred",
    "keypoints_3d": "[21, 3] RHD order, (P − root) / scale, in the image's camera frame "
                    "(view-corrected, or the camera's own for *_plain), mirrored",
    "keypoints_2d": "[21, 2] stored-image pixels (u, v), pixel centres at integers",
    "visible": "[21] 1 = annotated visible and inside the source image",
    "root": "[3] middle MCP, metres, same frame as keypoints_3d",
    "scale": "metres, middle MCP→PIP length",
    "points": "float16 [M ≤ 1024, 3] hand-surface points from depth, normalised like "
              "keypoints_3d; M = 0 for a test frame without enough depth points",
    "num_points": "M",
    "view_rotation": "[3, 3] R: original camera frame → stored frame, before mirroring "
                     "(identity for *_plain)",
    "side": "0 left, 1 right: the side of the hand in the original frame",
    "frame": "the example key, e.g. training/00042 or B2Counting/0042",
}


def read_png(path: epath.Path) -> np.ndarray:
    """Decodes a PNG through epath; a corrupt or truncated file raises SkipFrame naming it."""
    try:
        with path.open("rb") as f:
            image = Image.open(f)
            image.load()
            return np.asarray(image)
    except FileNotFoundError as e:
        raise SkipFrame(f"missing file {path}", "missing file") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise SkipFrame(f"corrupt or truncated PNG {path}: {e}",
                        "corrupt or truncated PNG") from e


def example_features(context_size: int = CONTEXT_SIZE) -> tfds.features.FeaturesDict:
    """The stored features of the RHD and STB builders (see ``FEATURE_DOC``).

    ``context_size`` is documented, not stored in the spec: the image is variable-size bytes.
    """
    del context_size
    t = tfds.features.Tensor
    return tfds.features.FeaturesDict({
        "image": t(shape=(), dtype=np.object_),
        "K_image": t(shape=(3, 3), dtype=np.float32),
        "crop_side": tfds.features.Scalar(dtype=np.float32),
        "keypoints_3d": t(shape=(NUM_KEYPOINTS, 3), dtype=np.float32),
        "keypoints_2d": t(shape=(NUM_KEYPOINTS, 2), dtype=np.float32),
        "visible": t(shape=(NUM_KEYPOINTS,), dtype=np.float32),
        "root": t(shape=(3,), dtype=np.float32),
        "scale": tfds.features.Scalar(dtype=np.float32),
        "points": t(shape=(None, 3), dtype=np.float16),
        "num_points": tfds.features.Scalar(dtype=np.int32),
        "view_rotation": t(shape=(3, 3), dtype=np.float32),
        "side": tfds.features.Scalar(dtype=np.int32),
        "frame": tfds.features.Text(),
    })
