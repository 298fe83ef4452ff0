"""handvae.data.source: config → TFDS name (view-correction switch), split counts, decoding."""

import pathlib

import ml_collections
import numpy as np
import pytest

from data_prep import build
from handvae.data import source


def _config(**fields):
    return ml_collections.ConfigDict({"dataset": "synthetic", "data_dir": "", **fields})


def test_view_correction_selects_the_plain_config():
    assert source.tfds_name(_config()) == "rhd/synthetic"
    assert source.tfds_name(_config(view_correction=True)) == "rhd/synthetic"
    assert source.tfds_name(_config(view_correction=False)) == "rhd/synthetic_plain"
    assert source.tfds_name(_config(dataset="stb", view_correction=False)) == "stb/real_plain"
    with pytest.raises(ValueError, match="data.view_correction"):
        source.tfds_name(_config(view_correction="no"))
    with pytest.raises(ValueError, match="data.dataset"):
        source.tfds_name(_config(dataset="nyu"))


def test_load_source_reads_the_plain_build_and_counts_splits(tmp_path):
    raw = pathlib.Path(build.__file__).parent / "rhd" / "dummy_data"
    build.build("rhd", "synthetic_plain", raw, tmp_path)
    config = _config(view_correction=False, data_dir=str(tmp_path))
    test = source.load_source(config, "test")
    example = source.decode_example(test[0])
    np.testing.assert_array_equal(example["view_rotation"], np.eye(3))
    assert example["image"].shape == (512, 512, 3)
    assert source.split_counts(config, "test") == (2, 2)
    assert len(source.load_source(config, "validation")) == 1
    with pytest.raises(ValueError, match="split 'dev'"):
        source.load_source(config, "dev")
    with pytest.raises(FileNotFoundError, match="--config synthetic "):
        source.load_source(_config(data_dir=str(tmp_path)), "test")   # vc build absent


def test_a_build_of_the_old_format_asks_for_a_rebuild(tmp_path):
    (tmp_path / "rhd" / "synthetic" / "1.0.0").mkdir(parents=True)
    (tmp_path / "rhd" / "synthetic" / "1.0.0" / "dataset_info.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="older data_prep(.|\n)*python -m data_prep.build"):
        source.load_source(_config(data_dir=str(tmp_path)), "train")
