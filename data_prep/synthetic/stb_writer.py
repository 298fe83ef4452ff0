"""Writes synthetic frames in the Stereo Hand Pose Tracking Benchmark's (STB) layout, SK part.

Layout (Zhang et al., ICIP 2017; the data set's readme.txt, quoted in public loaders such as
Idein/chainer-hand-pose ``stb_dataset.py`` and lixiny/bihand ``datasets/stb.py``)::

    <out>/images/<Seq>/SK_color_<i>.png   RGB uint8 640×480, the RealSense F200 colour camera
    <out>/images/<Seq>/SK_depth_<i>.png   RGB uint8 640×480, depth mm = R + 256·G (B = 0),
                                          in the *depth* camera (intrinsics STB_SK_DEPTH_K),
                                          not registered to colour; 0 = no measurement
    <out>/labels/<Seq>_SK.mat             'handPara' float64 [3, 21, N], millimetres

Sequences: B1Counting, B1Random (the test split of the hand3d protocol) and
B2–B6 Counting/Random (training). ``handPara`` is in STB's joint order (palm centre, then
little, ring, middle, index, thumb, each MCP → tip) and in the depth camera's frame: the
readme's rotation vector r and translation t (mm) map colour-camera points to depth-camera
points, ``p_depth = Rodrigues(r) p_color + t`` (``handvae.ops.camera.stb_color_to_depth``);
loaders invert it, ``p_color = Rodrigues(r)ᵀ (p_depth − t)`` (``stb_depth_to_color``).
Slot 0 holds STB's palm centre, written as
``handvae.ops.skeleton.wrist_to_stb_palm`` of the synthetic hand (so ``stb_palm_to_wrist``
recovers the wrist exactly). STB shows left hands only; so does this writer.
"""

from __future__ import annotations

import io
import os
import pathlib

import numpy as np
import scipy.io

from data_prep.synthetic import background, output, render, scene
from handvae.ops import camera, skeleton

IMAGE_SIZE = camera.STB_IMAGE_SIZE  # (height, width) = (480, 640)
TRAIN_SEQUENCES = tuple(f"B{b}{kind}" for b in range(2, 7) for kind in ("Counting", "Random"))
TEST_SEQUENCES = ("B1Counting", "B1Random")
BACKGROUND_RANGE_M = (0.9, 2.0)
DEPTH_MAX_RANGE_M = 1.5   # beyond this the synthetic sensor returns 0 (no measurement)
DEPTH_NOISE_MM = 1.0
_MAT_HEADER = b"MATLAB 5.0 MAT-file, written by handvae data_prep.synthetic"


def depth_rotation() -> np.ndarray:
    """[3, 3] R with ``p_depth = R p_color + t`` (STB readme's Rodrigues vector)."""
    return camera.rodrigues(camera.STB_SK_ROTATION_VECTOR)


def encode_depth(depth_mm: np.ndarray) -> np.ndarray:
    """[H, W] depth in millimetres → [H, W, 3] uint8 with R = mm % 256, G = mm // 256, B = 0."""
    q = np.clip(np.round(depth_mm), 0, 65535).astype(np.uint16)
    packed = np.zeros(depth_mm.shape + (3,), np.uint8)
    packed[..., 0] = q & 0xFF
    packed[..., 1] = q >> 8
    return packed


def decode_depth(packed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_depth`: [H, W, 3] uint8 → [H, W] float32 millimetres."""
    packed = np.asarray(packed)
    if packed.ndim != 3 or packed.shape[-1] < 2:
        raise ValueError(f"packed depth must be [H, W, 3], got {packed.shape}")
    return packed[..., 0].astype(np.float32) + 256.0 * packed[..., 1].astype(np.float32)


def hand_para(keypoints_color_m: np.ndarray) -> np.ndarray:
    """STB labels of hands given in RHD order in the colour frame.

    Args:
      keypoints_color_m: [N, 21, 3] keypoints in RHD order (joint 0 the wrist), colour-camera
        frame, metres.

    Returns:
      [3, 21, N] float64 ``handPara``: STB order, palm centre in slot 0, depth-camera frame, mm.
    """
    keypoints = np.asarray(keypoints_color_m, dtype=np.float64)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (21, 3):
        raise ValueError(f"keypoints_color_m must be [N, 21, 3], got {keypoints.shape}")
    palm = skeleton.wrist_to_stb_palm(keypoints)
    stb_order = palm[:, skeleton.RHD_TO_STB]
    return np.transpose(camera.stb_color_to_depth(1000.0 * stb_order), (2, 1, 0))


def _depth_image(rng: np.random.Generator, primitives: tuple[render.Capsules, tuple],
                 plane: tuple[np.ndarray, float], plain: bool) -> np.ndarray:
    """Renders the depth camera's view (mm, float) of the hand and the background plane."""
    rotation = depth_rotation()
    t_m = camera.STB_SK_TRANSLATION_MM / 1000.0
    capsules, slabs = primitives
    K = camera.STB_SK_DEPTH_K
    rendering = render.render_capsules(
        render.transform(capsules, rotation, t_m), K, IMAGE_SIZE,
        slabs=tuple(render.transform(slab, rotation, t_m) for slab in slabs))
    normal, offset = plane
    # The plane n·p = d in colour coordinates is (R n)·p' = d + (R n)·t in depth coordinates.
    normal_depth = rotation @ normal
    plane_depth = background.plane_depth_from(normal_depth, offset + normal_depth @ t_m, K,
                                              IMAGE_SIZE)
    depth_m = np.minimum(rendering.depth, plane_depth)
    depth_mm = 1000.0 * depth_m
    if not plain:
        depth_mm = depth_mm + rng.normal(0.0, DEPTH_NOISE_MM, depth_m.shape)
    return np.where(depth_m <= DEPTH_MAX_RANGE_M, depth_mm, 0.0)


def make_frame(seed: int, sequence: str, index: int, plain: bool = False
               ) -> tuple[scene.HandFrame, np.ndarray]:
    """Renders one STB frame.

    Returns:
      (frame in the colour camera, depth-camera depth image [480, 640] float64 mm).
    """
    rng = output.frame_rng(seed, f"stb/{sequence}", index)
    K = camera.STB_SK_COLOR_K
    frame, primitives, plane = scene.render_hand_frame(
        rng, K, IMAGE_SIZE, "left", BACKGROUND_RANGE_M, plain=plain, return_scene=True)
    return frame, _depth_image(rng, primitives, plane, plain)


def _write_frame(job: tuple[str, int, str, int, bool]) -> np.ndarray:
    """Writes one frame's PNGs; returns its [21, 3] colour-frame keypoints (metres)."""
    folder, seed, sequence, index, plain = job
    frame, depth_mm = make_frame(seed, sequence, index, plain=plain)
    root = pathlib.Path(folder)
    output.save_png(root / f"SK_color_{index}.png", frame.rgb)
    output.save_png(root / f"SK_depth_{index}.png", encode_depth(depth_mm))
    return frame.keypoints


def save_labels(path: pathlib.Path, handpara: np.ndarray) -> None:
    """Writes ``{'handPara': [3, 21, N]}`` as a MATLAB 5 file with a fixed header.

    scipy stamps the creation time into the 116-byte header text; it is replaced so that the
    same seed gives the same bytes.
    """
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"handPara": handpara}, format="5", do_compression=False)
    data = bytearray(buffer.getvalue())
    data[:116] = _MAT_HEADER.ljust(116, b" ")
    path.write_bytes(bytes(data))


def write_stb(out: str | os.PathLike, num_train: int, num_eval: int, seed: int = 0,
              workers: int | None = None, overwrite: bool = False, plain: bool = False,
              progress: bool = True, train_sequences: tuple[str, ...] = TRAIN_SEQUENCES,
              test_sequences: tuple[str, ...] = TEST_SEQUENCES) -> pathlib.Path:
    """Writes a synthetic data set in STB's layout (SK camera only).

    Args:
      out: the folder that will hold ``images/`` and ``labels/`` (STB's manual_dir).
      num_train: frames spread over ``train_sequences`` (≥ 1; earlier sequences get the
        remainder; a sequence with no frame is not written).
      num_eval: frames spread over ``test_sequences`` (≥ 1).
      seed: the data set's seed; frame i of a sequence depends only on (seed, sequence, i).
      workers: processes (None → all cores).
      overwrite: replace a non-empty ``out``.
      plain: smooth backgrounds, no colour or depth noise (small files, for dummy data).
      progress: show tqdm progress bars.
      train_sequences, test_sequences: sequence names (default: STB's).

    Returns:
      The path of ``out``.
    """
    counts = {"train": output.check_count("--num-train", num_train),
              "eval": output.check_count("--num-eval", num_eval)}
    plan: list[tuple[str, int]] = []
    for split, sequences in (("train", train_sequences), ("eval", test_sequences)):
        if not sequences:
            raise ValueError(f"{split} sequences must not be empty")
        plan += [(s, n) for s, n in zip(sequences, output.spread(counts[split],
                                                                 len(sequences))) if n > 0]
    out = pathlib.Path(out)
    with output.atomic_output_dir(out, overwrite) as temporary:
        (temporary / "labels").mkdir()
        jobs = []
        for sequence, count in plan:
            folder = temporary / "images" / sequence
            folder.mkdir(parents=True)
            jobs += [(str(folder), seed, sequence, i, plain) for i in range(count)]
        keypoints = output.run_jobs(_write_frame, jobs, workers, description="STB",
                                    progress=progress)
        start = 0
        for sequence, count in plan:
            labels = hand_para(np.stack(keypoints[start:start + count]))
            save_labels(temporary / "labels" / f"{sequence}_SK.mat", labels)
            start += count
    return out


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Loads ``handPara`` [3, 21, N] (mm, depth frame, STB order) from a ``<Seq>_SK.mat``."""
    return scipy.io.loadmat(path)["handPara"]
