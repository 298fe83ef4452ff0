"""The predict function with its weights, serialised by ``jax.export`` (no TensorFlow).

The exported function is :func:`handvae.inference.predictor.make_predict_fn` with the weights
as constants and a symbolic batch size ``b``::

    f(rgb f32[b, S, S, 3], crop_intrinsics f32[b, 3, 3], crop_to_camera f32[b, 3, 3],
      crop_to_image f32[b, 3, 3]) -> {"pose_3d", "keypoints_2d", "latent_mean"[, "cloud"]}

Loading needs only jax and numpy (see the README, "Run an exported model")::

    from jax import export
    f = export.deserialize(open(path, "rb").read())
    outputs = f.call(rgb, crop_intrinsics, crop_to_camera, crop_to_image)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax import export

from handvae.data import spec
from handvae.inference import geometry
from handvae.inference.predictor import Predictor, make_predict_fn
from handvae.inference import outputs
from handvae.ops import skeleton

# jax.export's built-in platforms (``jax.export.export``); it accepts any string and then
# writes a file no machine runs, so names are checked here.
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
METADATA_FORMAT = "jax.export (StableHLO), serialised with Exported.serialize()"


def check_platforms(platforms: Sequence[str]) -> tuple[str, ...]:
    """The platforms to export for, duplicates dropped, in the order given.

    Raises:
      ValueError: none given, or a name not in :data:`PLATFORMS` (the message lists them).
    """
    chosen = tuple(dict.fromkeys(platforms))
    unknown = [p for p in chosen if p not in PLATFORMS]
    if unknown or not chosen:
        raise ValueError(f"--platform {', '.join(map(repr, unknown)) or '(none)'}: unknown; "
                         f"valid platforms are {', '.join(PLATFORMS)}")
    return chosen


def check_output_path(path: str) -> None:
    """Refuses an export ``path`` that would fail or overwrite a file that is not an export.

    Raises:
      ValueError: ``path`` is a folder, lies below a file, or ``path`` / ``path + '.json'``
        exists but is not a file :func:`write_exported` wrote (the message names it).
    """
    if os.path.isdir(path):
        raise ValueError(f"--out {path} is a folder; give a file name such as "
                         f"{os.path.join(path, 'model.jaxexport')}")
    blocking = outputs.blocking_file(os.path.dirname(os.path.abspath(path)))
    if blocking is not None:
        raise ValueError(f"--out {path}: {blocking} is a file, not a folder; choose another "
                         "--out")
    for target, ours in ((path, _is_export), (path + ".json", _is_metadata)):
        if os.path.lexists(target) and not ours(target):
            raise ValueError(f"--out {path}: {target} exists and was not written by export; "
                             "move it or choose another --out")


def _is_export(path: str) -> bool:
    try:
        load_exported(path)
    except Exception:  # noqa: BLE001 (any failure to deserialise means "not an export")
        return False
    return not os.path.islink(path)


def _is_metadata(path: str) -> bool:
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return (not os.path.islink(path) and isinstance(meta, dict)
            and meta.get("format") == METADATA_FORMAT)


def export_predictor(predictor: Predictor, *, platforms: Sequence[str] = ("cpu",)
                     ) -> export.Exported:
    """``jax.export`` of the predictor's function for a symbolic batch size.

    Raises:
      ValueError: a platform not in :data:`PLATFORMS`.
    """
    platforms = check_platforms(platforms)
    size = predictor.image_size
    (b,) = export.symbolic_shape("b")
    args = (jax.ShapeDtypeStruct((b, size, size, 3), np.float32),
            *(jax.ShapeDtypeStruct((b, 3, 3), np.float32) for _ in range(3)))
    keypoints = "projection" if predictor.keypoints_2d_source == "projection" else "auto"
    fn = jax.jit(make_predict_fn(predictor.model, predictor.variables, keypoints=keypoints))
    return export.export(fn, platforms=platforms)(*args)


def metadata(predictor: Predictor, platforms: Sequence[str] = ("cpu",)) -> dict[str, Any]:
    """What a user needs to feed the exported function without handvae (written beside it)."""
    return {
        "format": METADATA_FORMAT,
        "platforms": list(platforms),
        "strategy": predictor.strategy, "image_size": predictor.image_size,
        "rgb_mean": spec.RGB_MEAN.tolist(), "rgb_std": spec.RGB_STD.tolist(),
        "rgb": "[b, S, S, 3] float32 = (uint8 / 255 - rgb_mean) / rgb_std",
        "crop_intrinsics": "[b, 3, 3] K of the S×S crop",
        "crop_to_camera": "[b, 3, 3] M: camera-frame point = crop-frame point @ M",
        "crop_to_image": "[b, 3, 3] homography, crop pixel (u, v, 1) → image pixel",
        "outputs": {"pose_3d": "[b, 21, 3] root-relative, bone units, camera frame",
                    "keypoints_2d": "[b, 21, 2] image pixels",
                    "latent_mean": "[b, D]", "cloud": "[b, N, 3] (cloud strategies)"},
        "keypoints_2d_source": predictor.keypoints_2d_source,
        "joint_names": list(skeleton.JOINT_NAMES),
        "stored_crop_size": geometry.STORED_CROP_SIZE,
        "source": predictor.source,
    }


def _write_atomically(path: str, data: bytes) -> None:
    """Writes ``data`` beside ``path`` and renames it over ``path``: never a half file."""
    partial = f"{path}.partial-{os.getpid()}"
    try:
        with open(partial, "wb") as f:
            f.write(data)
        os.replace(partial, path)
    finally:
        if os.path.lexists(partial):
            os.remove(partial)


def write_exported(predictor: Predictor, path: str, *, platforms: Sequence[str] = ("cpu",)
                   ) -> tuple[int, str]:
    """Writes ``path`` (the serialised function) and ``path + '.json'`` (metadata).

    Each file is replaced whole (written beside it, then renamed). ``platforms`` (checked
    against :data:`PLATFORMS`) are listed in the metadata.

    Returns:
      (size of ``path`` in bytes, the metadata path).
    """
    exported = export_predictor(predictor, platforms=platforms)
    blob = exported.serialize()
    meta_path = path + ".json"
    meta = json.dumps(metadata(predictor, exported.platforms), indent=1) + "\n"
    _write_atomically(path, bytes(blob))
    _write_atomically(meta_path, meta.encode())
    return len(blob), meta_path


def load_exported(path: str) -> export.Exported:
    """Reads a file written by :func:`write_exported` (jax only)."""
    with open(path, "rb") as f:
        return export.deserialize(bytearray(f.read()))
