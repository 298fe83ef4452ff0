"""The decoded cache: identical rows, invalidation by the build, atomic writes, disk fallback."""

import collections
import os
import shutil

import numpy as np
import pytest

from experiments.configs.common import get_base_config, shrink_to_tiny
from handvae.data import decoded_cache, pipeline, prepared
from handvae.data import source as source_lib


@pytest.fixture
def data_dir(rhd_synthetic_data_dir, tmp_path):
    """A private copy of the built dummy set (tests touch and rebuild it)."""
    copy = tmp_path / "tfds"
    shutil.copytree(rhd_synthetic_data_dir, copy)
    return str(copy)


def _data_config(data_dir, **fields):
    config = shrink_to_tiny(get_base_config("synthetic")).data
    config.data_dir = data_dir
    for name, value in fields.items():
        config[name] = value
    return config


def _assert_same(a: dict, b: dict):
    assert set(a) == set(b)
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, str) or isinstance(y, str):
            assert str(x) == str(y), key
            continue
        assert type(x) is type(y) or np.asarray(x).dtype == np.asarray(y).dtype, key
        assert np.asarray(x).dtype == np.asarray(y).dtype, key
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=key)


def test_cached_examples_equal_prepared_ones(data_dir):
    config = _data_config(data_dir, decoded_cache=True)
    cache = decoded_cache.open_or_build(config, "train", config.image_size)
    source = source_lib.load_source(config, "train")
    assert len(cache) == len(source) >= 2
    for i in range(len(source)):
        _assert_same(cache[i], prepared.prepare(source[i], config.image_size))
    # Beside the TFDS build, keyed by split, size and the build's identity.
    version_dir = source_lib._version_dir(config)
    assert cache.directory.startswith(version_dir + decoded_cache.SUFFIX + os.sep)
    assert os.path.basename(cache.directory).startswith(f"train_s{config.image_size}_")
    # Opened again, not rebuilt.
    again = decoded_cache.open_or_build(config, "train", config.image_size)
    assert again.directory == cache.directory
    assert again.manifest["created"] == cache.manifest["created"]


@pytest.mark.parametrize("worker_kind", ["threads", "processes"])
def test_batches_from_the_cache_equal_todays_path(data_dir, tmp_path, worker_kind):
    kwargs = dict(num_workers=2, worker_kind=worker_kind)
    today = _data_config(data_dir, **kwargs)
    cached = _data_config(data_dir, decoded_cache=True,
                          decoded_cache_dir=str(tmp_path / "cache"), **kwargs)
    with pipeline.train_batches(today, 3, seed=1, start_step=2) as a, \
            pipeline.train_batches(cached, 3, seed=1, start_step=2) as b:
        for _ in range(3):
            batch_a, batch_b = next(a), next(b)
            assert set(batch_a) == set(batch_b)
            for key in batch_a:
                np.testing.assert_array_equal(batch_a[key], batch_b[key], err_msg=key)
    assert os.listdir(tmp_path / "cache")  # the user-chosen place holds it


def test_a_changed_build_invalidates_the_cache_and_removes_the_stale_one(data_dir):
    config = _data_config(data_dir)
    old = decoded_cache.open_or_build(config, "train", 32)
    version_dir = source_lib._version_dir(config)
    yours = os.path.join(os.path.dirname(old.directory), "train_s32_yours")
    os.makedirs(yours)            # named like a cache, but not one: never removed
    report = os.path.join(version_dir, source_lib.BUILD_REPORT)
    stat = os.stat(report)
    os.utime(report, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))   # "rebuilt"
    new = decoded_cache.open_or_build(config, "train", 32)
    assert new.directory != old.directory
    assert not os.path.exists(old.directory)
    assert os.path.isdir(yours)
    # Another crop size is another cache, kept beside it.
    other = decoded_cache.open_or_build(config, "train", 64)
    assert os.path.exists(new.directory) and other.directory != new.directory


class _FailingSource(collections.abc.Sequence):
    def __init__(self, source, fail_at):
        self._source, self._fail_at = source, fail_at

    def __len__(self):
        return len(self._source)

    def __getitem__(self, index):
        if index == self._fail_at:
            raise KeyboardInterrupt("killed")
        return self._source[index]


def test_a_killed_write_leaves_nothing_and_a_dead_writers_folder_is_removed(data_dir, tmp_path):
    config = _data_config(data_dir)
    source = source_lib.load_source(config, "train")
    target = tmp_path / "root" / "train_s32_x"
    with pytest.raises(KeyboardInterrupt):
        decoded_cache.build(_FailingSource(source, 1), str(target), 32, num_workers=1)
    assert os.listdir(tmp_path / "root") == []
    # A writer killed by SIGKILL leaves its temporary folder; no reader opens it and the next
    # writer on this host removes it (its pid is not running). Another host's is kept.
    dead = tmp_path / "root" / f".tmp-{decoded_cache._host()}-999999999-deadbeef"
    dead.mkdir()
    elsewhere = tmp_path / "root" / ".tmp-otherhost.example-999999999-deadbeef"
    elsewhere.mkdir()
    decoded_cache.build(source, str(target), 32, num_workers=1)
    assert sorted(os.listdir(tmp_path / "root")) == [elsewhere.name, "train_s32_x"]
    assert len(decoded_cache.DecodedCache(str(target))) == len(source)


def test_no_room_falls_back_to_todays_path(data_dir, monkeypatch, capsys):
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(decoded_cache.shutil, "disk_usage", lambda path: usage(1, 1, 1000))
    config = _data_config(data_dir, decoded_cache=True)
    assert decoded_cache.open_or_build(config, "train", 32) is None
    assert "MiB are free" in capsys.readouterr().err
    root = decoded_cache.cache_root(config, source_lib._version_dir(config))
    assert not os.path.exists(root) or os.listdir(root) == []
    with pipeline.train_batches(config, 2, seed=0) as batches, \
            pipeline.train_batches(_data_config(data_dir), 2, seed=0) as reference:
        np.testing.assert_array_equal(next(batches)["rgb"], next(reference)["rgb"])


def test_bytes_per_example_at_the_two_scales():
    # cpu scale (S = 64): 128² window; paper scale (S = 256): the whole 512² window.
    assert decoded_cache.bytes_per_example(64) == 128 * 128 * 3 + 768 + 1024 * 6 + 8
    assert decoded_cache.bytes_per_example(256) == 512 * 512 * 3 + 768 + 1024 * 6 + 8
