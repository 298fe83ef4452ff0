"""Where built data sets live and how a stored example is read back.

The one place that knows TFDS names, the ``data_dir`` resolution and the stored example's
encoding; :mod:`handvae.data.pipeline` turns decoded examples into batches.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import numpy as np

# config.data.dataset → TFDS name (view-corrected). ``data.view_correction = False`` selects
# the ``*_plain`` config of the same data (plain crops, camera-frame 3-D quantities).
TFDS_NAMES = {"rhd": "rhd/real", "stb": "stb/real", "synthetic": "rhd/synthetic",
              "synthetic_stb": "stb/synthetic"}
PLAIN_SUFFIX = "_plain"
DEFAULT_DATA_DIR = "data/tfds"
BUILD_REPORT = "build_report.json"  # written by data_prep.build: per split defined/stored
SPLITS = ("train", "validation", "test")
MIN_VERSION = "2.0.0"   # the stored format decode_example reads


def resolve_data_dir(data_config: Any) -> str:
    """``data_config.data_dir``, else ``$HANDVAE_DATA_DIR``, else ``./data/tfds``."""
    return (data_config.get("data_dir") or os.environ.get("HANDVAE_DATA_DIR")
            or DEFAULT_DATA_DIR)


def tfds_name(data_config: Any) -> str:
    """TFDS ``<name>/<config>`` of ``data.dataset`` and ``data.view_correction`` (default True).

    Raises:
      ValueError: unknown ``data.dataset`` or a non-bool ``data.view_correction``.
    """
    if data_config.dataset not in TFDS_NAMES:
        raise ValueError(f"data.dataset must be one of {sorted(TFDS_NAMES)}, "
                         f"got {data_config.dataset!r}")
    view_correction = data_config.get("view_correction", True)
    if not isinstance(view_correction, (bool, np.bool_)):
        raise ValueError(f"data.view_correction must be True or False, got {view_correction!r}")
    name = TFDS_NAMES[data_config.dataset]
    return name if view_correction else name + PLAIN_SUFFIX


def _version_dir(data_config: Any) -> str:
    import tensorflow_datasets as tfds  # heavy import, only when reading

    name, data_dir = tfds_name(data_config), resolve_data_dir(data_config)
    # Read-only, from the files: never the (possibly registered) builder code. Folders that do
    # not parse as a version (``.incomplete-*`` of a running or killed build) are ignored.
    folder = os.path.join(data_dir, name)
    versions = []
    if os.path.isdir(folder):
        for entry in os.listdir(folder):
            if os.path.isfile(os.path.join(folder, entry, "dataset_info.json")):
                try:
                    versions.append(tfds.core.Version(entry))
                except ValueError:
                    continue
    if not versions:
        dataset, config = name.split("/")
        raise FileNotFoundError(
            f"no built {name} under data_dir={data_dir!r} (expected "
            f"{folder}/<version>/dataset_info.json). Build it first: "
            f"python -m data_prep.build --dataset {dataset} --config {config} "
            f"--manual_dir <raw data> --data_dir {data_dir}")
    newest = max(versions)
    if newest < tfds.core.Version(MIN_VERSION):
        dataset, config = name.split("/")
        raise FileNotFoundError(
            f"{folder}/{newest} was built by an older data_prep (format {newest}; this code reads "
            f">= {MIN_VERSION}: 512-px context image, validation split). Rebuild it: python -m "
            f"data_prep.build --dataset {dataset} --config {config} --manual_dir <raw data> "
            f"--data_dir {data_dir}")
    return os.path.join(folder, str(newest))


def load_source(data_config: Any, split: str):
    """Random-access source of a built split (``len(source)``, ``source[i]`` → stored example).

    Args:
      data_config: ``config.data`` (uses ``dataset``, ``view_correction``, ``data_dir``).
      split: 'train', 'validation' or 'test'.

    Raises:
      ValueError: unknown dataset or split. FileNotFoundError: the data set was not built
        there (the message gives the build command).
    """
    import tensorflow_datasets as tfds  # heavy import, only when reading

    builder = tfds.builder_from_directory(_version_dir(data_config))
    if split not in builder.info.splits:
        raise ValueError(f"split {split!r} is not in {tfds_name(data_config)} (it has "
                         f"{sorted(builder.info.splits)}); a data set built before version "
                         "2.0.0 has no 'validation' split: rebuild it with python -m "
                         "data_prep.build")
    return builder.as_data_source(split=split)


def split_counts(data_config: Any, split: str) -> tuple[int, int]:
    """(frames the raw data define, examples stored) for ``split`` of the built data set.

    Every test frame with a readable colour image and a well-formed annotation is stored, so
    ``stored < defined`` on a test split means frames are missing from the evaluation.

    Raises:
      FileNotFoundError: not built, or built without ``build_report.json`` (rebuild).
    """
    path = os.path.join(_version_dir(data_config), BUILD_REPORT)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: rebuild the data set with "
                                "python -m data_prep.build --overwrite")
    with open(path) as f:
        counts = json.load(f)["splits"][split]
    return int(counts["defined"]), int(counts["stored"])


def decode_example(example: dict) -> dict:
    """A stored example as arrays (the stored encoding undone; see ``FEATURE_DOC``).

    Args:
      example: ``source[i]``: ``image`` JPEG bytes, ``points`` float16 [M, 3], ...

    Returns:
      dict with ``image`` uint8 [C, C, 3] (C = 512: a window 2× the hand's crop box, the
      crop being its central ``crop_side`` pixels), ``K_image`` float32 [3, 3] (its
      intrinsics, pixel centres at integers), ``crop_side`` float32, ``keypoints_2d`` [21, 2]
      stored-image pixels, ``keypoints_3d`` [21, 3] (P − root)/scale, ``visible`` [21],
      ``root`` [3] m, ``scale`` m, ``points`` float32 [M, 3] (M may be 0), ``side``, ``frame``
      (str), ``view_rotation`` [3, 3]. An already decoded example is returned as is.
    """
    image = example["image"]
    if not isinstance(image, (bytes, bytearray, np.bytes_)):
        return example
    from PIL import Image

    out = dict(example)
    with Image.open(io.BytesIO(bytes(image))) as decoded:
        out["image"] = np.asarray(decoded.convert("RGB"))
    out["points"] = np.asarray(example["points"], np.float32).reshape(-1, 3)
    frame = example.get("frame", "")
    out["frame"] = frame.decode() if isinstance(frame, bytes) else str(frame)
    for key in ("K_image", "keypoints_2d", "keypoints_3d", "visible", "root", "view_rotation"):
        out[key] = np.asarray(example[key], np.float32)
    out["crop_side"] = np.float32(example["crop_side"])
    out["scale"] = np.float32(example["scale"])
    return out
