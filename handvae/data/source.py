"""Where built data sets live and how a stored example is read back.

The one place that knows TFDS names, the ``data_dir`` resolution and the stored example's
encoding; :mod:`handvae.data.pipeline` turns decoded examples into batches.
"""

from __future__ import annotations

import os
from typing import Any

TFDS_NAMES = {"rhd": "rhd/real", "stb": "stb/real", "synthetic": "rhd/synthetic"}
DEFAULT_DATA_DIR = "data/tfds"


def resolve_data_dir(data_config: Any) -> str:
    """``data_config.data_dir``, else ``$HANDVAE_DATA_DIR``, else ``./data/tfds``."""
    return (data_config.get("data_dir") or os.environ.get("HANDVAE_DATA_DIR")
            or DEFAULT_DATA_DIR)


def load_source(data_config: Any, split: str):
    """Random-access source of a built split (``len(source)``, ``source[i]`` → example dict).

    Args:
      data_config: ``config.data`` (uses ``dataset`` and ``data_dir``).
      split: 'train' or 'test'.

    Raises:
      ValueError: unknown dataset. FileNotFoundError: the data set was not built there (the
        message gives the build command).
    """
    import tensorflow_datasets as tfds  # heavy import, only when reading

    if data_config.dataset not in TFDS_NAMES:
        raise ValueError(f"data.dataset must be one of {sorted(TFDS_NAMES)}, "
                         f"got {data_config.dataset!r}")
    name, data_dir = TFDS_NAMES[data_config.dataset], resolve_data_dir(data_config)
    # Read-only, from the files: never the (possibly registered) builder code.
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
    builder = tfds.builder_from_directory(os.path.join(folder, str(max(versions))))
    return builder.as_data_source(split=split)


def decode_example(example: dict) -> dict:
    """A stored example as arrays (the stored encoding undone; see ``FEATURE_DOC``)."""
    return example
