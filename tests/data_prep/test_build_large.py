"""A TensorFlow-free build past TFDS's old 1 GB in-memory limit, read back in full (issue 12).

Slow (minutes on 2 cores): ``pytest -m slow tests/data_prep/test_build_large.py``. The raw set
repeats the three dummy RHD training frames (symbolic links) with noise colour images, so each
example is large and about 1.1 GB of examples need only a few thousand frames.
"""

import math
import os
import pathlib
import pickle
import resource
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from data_prep import build, safe_pickle
from data_prep.rhd import rhd_dataset_builder as rhd

DUMMY = pathlib.Path(__file__).resolve().parents[2] / "data_prep" / "rhd" / "dummy_data"

TARGET_BYTES = 1.1 * 2**30


def _raw_set(root, copies: int):
    """RHD layout: ``copies`` training frames (links to 3 noisy dummy frames), dummy test."""
    shutil.copytree(DUMMY, root)
    training = root / rhd.DATA_FOLDER / "training"
    with open(training / "anno_training.pickle", "rb") as f:
        annotations = safe_pickle.load(f)
    frames = sorted(annotations, key=int)
    rng = np.random.default_rng(0)
    for frame in frames:
        path = training / "color" / f"{int(frame):05d}.png"
        Image.fromarray(rng.integers(0, 256, (320, 320, 3), dtype=np.uint8)).save(path)
    many = {}
    for number in range(copies):
        source = frames[number % len(frames)]
        many[number] = annotations[source]
        if number >= len(frames):
            for kind in ("color", "depth", "mask"):
                os.symlink(training / kind / f"{int(source):05d}.png",
                           training / kind / f"{number:05d}.png")
    with open(training / "anno_training.pickle", "wb") as f:
        pickle.dump(many, f)


@pytest.mark.slow
def test_build_past_one_gigabyte_without_tensorflow(tmp_path):
    _raw_set(tmp_path / "probe", 3)
    probe = build.build("rhd", "synthetic", tmp_path / "probe", tmp_path / "probe_tfds",
                        workers=1)
    per_example = probe.info.splits["train"].num_bytes / probe.info.splits["train"].num_examples
    copies = math.ceil(TARGET_BYTES / per_example)
    _raw_set(tmp_path / "raw", copies)
    built = build.build("rhd", "synthetic", tmp_path / "raw", tmp_path / "tfds", workers=None,
                        shard_bytes=build.SHARD_BYTES)
    splits = built.info.splits
    assert sum(splits[s].num_bytes for s in ("train", "validation")) > 2**30
    assert splits["train"].num_examples + splits["validation"].num_examples == copies
    assert len(splits["train"].shard_lengths) > 1          # bounded shards
    for split in ("train", "validation", "test"):
        source = built.as_data_source(split=split)
        frames = [source[i]["frame"] for i in range(len(source))]
        assert len(frames) == splits[split].num_examples and frames == sorted(frames)
    assert "tensorflow" not in sys.modules
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # Linux: KiB
    assert peak < 2 * 2**30, f"peak resident memory {peak / 2**30:.2f} GiB"
