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
from typing import Any

import jax
import numpy as np
from jax import export

from handvae.data import spec
from handvae.inference import geometry
from handvae.inference.predictor import Predictor, make_predict_fn
from handvae.ops import skeleton


def export_predictor(predictor: Predictor, *, platforms: tuple[str, ...] = ("cpu",)
                     ) -> export.Exported:
    """``jax.export`` of the predictor's function for a symbolic batch size."""
    size = predictor.image_size
    (b,) = export.symbolic_shape("b")
    args = (jax.ShapeDtypeStruct((b, size, size, 3), np.float32),
            *(jax.ShapeDtypeStruct((b, 3, 3), np.float32) for _ in range(3)))
    keypoints = "projection" if predictor.keypoints_2d_source == "projection" else "auto"
    fn = jax.jit(make_predict_fn(predictor.model, predictor.variables, keypoints=keypoints))
    return export.export(fn, platforms=platforms)(*args)


def metadata(predictor: Predictor) -> dict[str, Any]:
    """What a user needs to feed the exported function without handvae (written beside it)."""
    return {
        "format": "jax.export (StableHLO), serialised with Exported.serialize()",
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


def write_exported(predictor: Predictor, path: str, *, platforms: tuple[str, ...] = ("cpu",)
                   ) -> tuple[int, str]:
    """Writes ``path`` (the serialised function) and ``path + '.json'`` (metadata).

    Returns:
      (size of ``path`` in bytes, the metadata path).
    """
    blob = export_predictor(predictor, platforms=platforms).serialize()
    with open(path, "wb") as f:
        f.write(blob)
    meta_path = path + ".json"
    with open(meta_path, "w") as f:
        json.dump(metadata(predictor), f, indent=1)
        f.write("\n")
    return len(blob), meta_path


def load_exported(path: str) -> export.Exported:
    """Reads a file written by :func:`write_exported` (jax only)."""
    with open(path, "rb") as f:
        return export.deserialize(bytearray(f.read()))
