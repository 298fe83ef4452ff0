"""handvae.data.pipeline on the dummy synthetic RHD set (built once per session by conftest)."""

import os
import time

import numpy as np
import pytest

from experiments.configs.common import get_base_config
from handvae.data import pipeline, prefetch, spec
from handvae.data import source as source_lib

SIZE, HEAT, POINTS = 64, 16, 64


def _config(data_dir, **overrides):
    data = get_base_config("synthetic").data
    data.data_dir = data_dir
    data.image_size, data.heatmap_size, data.num_points = SIZE, HEAT, POINTS
    data.update(overrides)
    return data


def _take(iterator, count):
    try:
        return [next(iterator) for _ in range(count)]
    finally:
        iterator.close()


def test_train_batch_follows_the_contract(rhd_synthetic_data_dir):
    (batch,) = _take(pipeline.train_batches(_config(rhd_synthetic_data_dir), 4, seed=0), 1)
    shapes = spec.batch_shapes(4, SIZE, POINTS, HEAT)
    assert set(batch) == set(spec.BATCH_KEYS)
    for key in spec.BATCH_KEYS:
        assert batch[key].shape == shapes[key], key
        assert batch[key].dtype == np.float32, key
    assert np.all(np.isfinite(batch["rgb"]))
    assert 0.0 <= batch["heatmaps"].min() and batch["heatmaps"].max() <= 1.0
    np.testing.assert_allclose(batch["pose"][:, 12], 0.0, atol=1e-6)   # root-relative
    # the reference bone has unit length in normalised units
    np.testing.assert_allclose(np.linalg.norm(batch["pose"][:, 12] - batch["pose"][:, 11], axis=-1),
                               1.0, atol=1e-5)
    assert np.all(batch["scale"] > 0) and np.all(batch["root"][:, 2] > 0)


def test_batches_are_reproducible_and_resumable(rhd_synthetic_data_dir):
    config = _config(rhd_synthetic_data_dir)
    first = _take(pipeline.train_batches(config, 2, seed=3), 3)
    resumed = _take(pipeline.train_batches(config, 2, seed=3, start_step=2), 1)[0]
    other = _take(pipeline.train_batches(config, 2, seed=4), 1)[0]
    for key in spec.BATCH_KEYS:
        np.testing.assert_array_equal(first[2][key], resumed[key], err_msg=key)
    assert not np.array_equal(first[0]["rgb"], other["rgb"])


def test_processes_split_the_global_batch(rhd_synthetic_data_dir):
    config = _config(rhd_synthetic_data_dir)
    whole = _take(pipeline.train_batches(config, 4, seed=1), 1)[0]
    halves = [_take(pipeline.train_batches(config, 2, seed=1, process_index=i,
                                           process_count=2), 1)[0] for i in range(2)]
    np.testing.assert_array_equal(np.concatenate([h["pose"] for h in halves]), whole["pose"])
    with pytest.raises(ValueError, match="process_index"):
        pipeline.train_batches(config, 3, seed=1, process_index=2, process_count=2)


def test_eval_batches_are_finite_ordered_and_unaugmented(rhd_synthetic_data_dir):
    config = _config(rhd_synthetic_data_dir, image_size=256, heatmap_size=64)
    source = source_lib.load_source(config, "test")
    batches = list(pipeline.eval_batches(config, len(source) - 1, split="test"))
    assert [len(b["rgb"]) for b in batches] == [len(source) - 1, 1]
    again = list(pipeline.eval_batches(config, len(source) - 1, split="test"))
    np.testing.assert_array_equal(batches[0]["cloud"], again[0]["cloud"])
    example = source_lib.decode_example(source[0])
    # Unaugmented, a 256-px output of a 512² stored image is its central window.
    offset = (example["image"].shape[0] - int(example["crop_side"])) // 2
    window = example["image"][offset:offset + 256, offset:offset + 256]
    rgb = batches[0]["rgb"][0] * spec.RGB_STD + spec.RGB_MEAN
    np.testing.assert_allclose(rgb * 255, window, atol=1e-3)
    np.testing.assert_allclose(batches[0]["pose"][0], example["keypoints_3d"], atol=1e-6)
    np.testing.assert_allclose(batches[0]["keypoints_2d"][0], example["keypoints_2d"] - offset,
                               atol=1e-4)
    assert batches[0]["labelled"].all()
    short = list(pipeline.eval_batches(config, 4, split="test", num_examples=1))
    assert [len(b["rgb"]) for b in short] == [1]


def test_eval_batches_do_not_depend_on_the_worker_threads(rhd_synthetic_data_dir):
    one = list(pipeline.eval_batches(_config(rhd_synthetic_data_dir, num_workers=1), 3,
                                     split="test"))
    many = list(pipeline.eval_batches(_config(rhd_synthetic_data_dir, num_workers=5), 3,
                                      split="test"))
    assert [len(b["rgb"]) for b in many] == [len(b["rgb"]) for b in one]
    for a, b in zip(one, many):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _cloud_to_joints(cloud, pose):
    """Mean distance from each cloud point [N, 3] to its nearest joint of ``pose`` [21, 3]."""
    return np.linalg.norm(cloud[:, None] - pose[None], axis=-1).min(-1).mean()


def test_augmented_row_is_self_consistent(context_sources, rhd_synthetic_data_dir):
    """Rotated 3-D keypoints, projected with the augmented K, land on the augmented 2-D ones."""
    from handvae.data import augment
    from handvae.ops import camera

    config = _config(rhd_synthetic_data_dir, image_size=96)
    example = context_sources["train"][0]
    plain = pipeline.example_to_features(example, config, np.random.default_rng(0),
                                         augment=False)
    plain_hugging = _cloud_to_joints(plain["cloud"], plain["pose"])
    for seed in range(5):
        rng = np.random.default_rng(seed)
        params = augment.sample_params(rng)
        image, kp2d, rot, k_out = augment.augment(example["image"], example["keypoints_2d"],
                                                  example["K_image"], example["crop_side"],
                                                  params, 96)
        metric = example["keypoints_3d"] * example["scale"] + example["root"]
        np.testing.assert_allclose(camera.project(metric @ rot.T, k_out), kp2d, atol=1e-3)
        assert abs(k_out[0, 1]) < 1e-9 and abs(k_out[1, 0]) < 1e-9   # a pinhole K
        # the same rng drives example_to_features: pose and root rotate together
        row = pipeline.example_to_features(example, config, np.random.default_rng(seed),
                                           augment=True)
        np.testing.assert_allclose(row["keypoints_2d"], kp2d, atol=1e-4)
        np.testing.assert_allclose(
            camera.project(row["pose"] * row["scale"] + row["root"], k_out), kp2d, atol=1e-3)
        # the cloud turns with the pose: its points stay as close to the rotated skeleton as
        # the un-augmented cloud is to its own (0.42-0.44 bone lengths here), and undoing the
        # rotation on the cloud alone (cloud @ rot) pulls them off it (0.59-0.94 for turns
        # of 29-174 degrees)
        angle = np.degrees(np.arccos(np.clip((np.trace(rot) - 1) / 2, -1, 1)))
        hugging = _cloud_to_joints(row["cloud"], row["pose"])
        assert abs(hugging - plain_hugging) < 0.05, (hugging, plain_hugging)
        if angle > 20:
            assert hugging < 0.8 * _cloud_to_joints(row["cloud"] @ rot, row["pose"]), angle
        rgb = row["rgb"] * spec.RGB_STD + spec.RGB_MEAN
        assert rgb.max() > 0.05 and (rgb.max(-1) < 1e-3).mean() < 0.01   # no black fill


@pytest.mark.parametrize("targets,cloud_input", [(("pose",), False),
                                                 (("pose", "heatmaps", "cloud"), True)])
def test_batches_carry_only_the_requested_keys(rhd_synthetic_data_dir, targets, cloud_input):
    config = _config(rhd_synthetic_data_dir)
    keys = spec.required_keys(targets, cloud_input, evaluation=False)
    (some,) = _take(pipeline.train_batches(config, 2, seed=5, keys=keys), 1)
    (every,) = _take(pipeline.train_batches(config, 2, seed=5), 1)
    assert set(some) == set(keys)
    for key in keys:   # the same values as in the full batch: the draws ignore `keys`
        np.testing.assert_array_equal(some[key], every[key], err_msg=key)
    (evaluation,) = pipeline.eval_batches(config, 2, split="test", keys=spec.required_keys(
        targets, cloud_input, evaluation=True))
    assert {"pose", "visible", "root", "scale", "keypoints_2d"} <= set(evaluation)
    with pytest.raises(ValueError, match="unknown batch keys"):
        pipeline.train_batches(config, 2, seed=0, keys=("rgb", "depth"))


def test_required_keys_per_strategy():
    assert spec.required_keys(("pose",), False, evaluation=False) == ("rgb", "pose", "labelled")
    assert spec.required_keys(("pose", "heatmaps"), False, evaluation=False) == (
        "rgb", "pose", "heatmaps", "labelled")
    assert spec.required_keys(("pose", "cloud"), False, evaluation=False) == (
        "rgb", "pose", "cloud", "labelled", "cloud_resampled")
    assert spec.required_keys(("pose",), True, evaluation=True) == (
        "rgb", "pose", "cloud", "labelled", "keypoints_2d", "visible", "root", "scale",
        "cloud_resampled")
    with pytest.raises(ValueError, match="targets"):
        spec.required_keys(("depth",), False, evaluation=False)


def test_missing_data_set_says_how_to_build_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m data_prep.build --dataset rhd"):
        source_lib.load_source(_config(str(tmp_path)), "train")
    with pytest.raises(ValueError, match="data.dataset"):
        source_lib.load_source(_config(str(tmp_path), dataset="nyu"), "train")


def test_worker_processes_give_the_threads_batches(rhd_synthetic_data_dir):
    """Batch k is the same function of (seed, k) in spawned processes, from any start."""
    threads = _take(pipeline.train_batches(_config(rhd_synthetic_data_dir), 3, seed=5), 4)
    config = _config(rhd_synthetic_data_dir, worker_kind="processes", num_workers=2)
    processes = _take(pipeline.train_batches(config, 3, seed=5), 4)
    resumed = _take(pipeline.train_batches(config, 3, seed=5, start_step=3), 1)[0]
    for key in spec.BATCH_KEYS:
        for step in range(4):
            np.testing.assert_array_equal(processes[step][key], threads[step][key],
                                          err_msg=f"{key} at step {step}")
        np.testing.assert_array_equal(resumed[key], threads[3][key], err_msg=key)


class _Broken:
    """A picklable source whose examples cannot be read."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        raise OSError(f"example {index} is unreadable")


def test_a_worker_process_error_reaches_the_consumer(rhd_synthetic_data_dir):
    config = _config(rhd_synthetic_data_dir, worker_kind="processes", num_workers=1)
    with pytest.raises(OSError, match="unreadable"):
        _take(pipeline.train_batches(config, 2, seed=0, source=_Broken()), 1)
    with pytest.raises(ValueError, match="worker_kind"):
        pipeline.train_batches(_config(rhd_synthetic_data_dir, worker_kind="fibres"), 2, seed=0)


def _die(step, pool):
    """A batch maker whose worker process exits without a word."""
    os._exit(3)


def test_a_dead_worker_process_is_named_with_the_fix():
    with pytest.raises(RuntimeError, match="worker process died.*__main__") as caught:
        _take(prefetch.Prefetcher(_die, 0, 1, worker_kind="processes"), 1)
    assert "BrokenProcessPool" in type(caught.value.__cause__).__name__


def test_a_spooled_batch_reads_back_exactly_and_is_removed(tmp_path):
    """Worker processes hand batches over as files: every dtype, shape and value survives,
    arrays stay aligned, and the file is gone once read."""
    batch = {"rgb": np.random.default_rng(0).standard_normal((2, 5, 5, 3)).astype(np.float32),
             "mask": np.array([True, False, True]), "count": np.uint8(7),
             "empty": np.zeros((0, 3), np.float64), "ids": np.arange(5, dtype=np.int64)}
    path = str(tmp_path / "0.batch")
    back = prefetch.read_batch(path, prefetch.write_batch(batch, path))
    assert not os.path.exists(path)
    assert list(back) == list(batch)
    for key, value in batch.items():
        assert back[key].dtype == np.asarray(value).dtype and back[key].shape == np.shape(value)
        np.testing.assert_array_equal(back[key], value, err_msg=key)
        assert back[key].ctypes.data % 8 == 0, key


def _ones(step, pool):
    return {"x": np.full((4, 3), step, np.float32)}


def test_worker_processes_leave_no_spooled_batch_behind():
    batches = prefetch.Prefetcher(_ones, 2, 2, worker_kind="processes")
    spool = batches._spool
    assert [float(next(batches)["x"][0, 0]) for _ in range(3)] == [2.0, 3.0, 4.0]
    deadline = time.monotonic() + 30    # the queue fills, then built batches wait in the spool
    while not os.listdir(spool) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.listdir(spool)
    batches.close()
    assert not os.path.exists(spool)
