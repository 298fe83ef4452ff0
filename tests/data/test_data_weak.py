"""Sec. 5.3 / Fig. 8: train_fraction (supervised on m%) and labelled/unlabelled streams."""

import numpy as np
import pytest

from experiments.configs.common import get_base_config
from handvae.data import pipeline, streams
from contract_fixtures import toy_source

N = 40
KEYS = ("rgb", "labelled", "scale", "cloud", "cloud_resampled")


def _config(**overrides):
    data = get_base_config("synthetic").data
    data.image_size, data.num_points, data.augment = 8, 4, False
    data.update(overrides)
    return data


def _batches(config, batch_size, count, *, seed=0, start_step=0, source=None, **kwargs):
    iterator = pipeline.train_batches(config, batch_size, seed=seed, start_step=start_step,
                                      source=source or toy_source(N), keys=KEYS, **kwargs)
    try:
        return [next(iterator) for _ in range(count)]
    finally:
        iterator.close()


def _indices(batch):
    return batch["scale"].astype(int) - 1        # toy example i has scale i + 1


def test_weak_default_adds_a_whole_unlabelled_batch_to_the_labelled_one():
    """Sec. 5.3: "besides fully supervised training on m% data, we also train the 'RC2C'
    sub-parts with the rest": B labelled rows (the supervised baseline's batch) + B unlabelled."""
    config = _config(labelled_fraction=0.25)                    # 10 of 40 labelled
    assert config.weak_batch == "added"
    assert streams.rows_per_step(config, 4) == 8
    assert streams.rows_per_step(_config(), 4) == 4             # supervised: B rows
    assert streams.rows_per_step(_config(labelled_fraction=0.25, weak_batch="split"), 4) == 4
    for batch in _batches(config, streams.rows_per_step(config, 4), 5):
        index, labelled = _indices(batch), batch["labelled"]
        assert labelled.sum() == 4 and (1 - labelled).sum() == 4
        assert np.all(index[labelled == 1] < 10) and np.all(index[labelled == 0] >= 10)
    with pytest.raises(ValueError, match="data.weak_batch"):
        streams.rows_per_step(_config(labelled_fraction=0.25, weak_batch="half"), 4)


def test_trainer_reads_the_added_weak_batch(monkeypatch):
    """The loop asks the pipeline for 2B rows per step with the default weak mix."""
    from experiments.configs import weak
    from handvae.training import loop

    seen = {}

    def fake_train_batches(data_config, batch_size, **kwargs):
        seen["rows"] = batch_size
        return iter(())

    monkeypatch.setattr(loop.pipeline, "train_batches", fake_train_batches)
    config = weak.get_config("labelled=0.05,dataset=synthetic")
    loop._train_iterator(config, None, 0, raw=False)
    assert seen["rows"] == 2 * config.batch_size
    config.data.weak_batch = "split"
    loop._train_iterator(config, None, 0, raw=False)
    assert seen["rows"] == config.batch_size


def test_split_weak_batch_mixes_a_fixed_number_of_labelled_rows():
    config = _config(labelled_fraction=0.05, labelled_per_batch=0,   # 2 of 40 labelled
                     weak_batch="split")
    batches = _batches(config, 8, 9)
    for batch in batches:
        index, labelled = _indices(batch), batch["labelled"]
        assert labelled.sum() == 4                        # split's default: half the batch
        assert np.all(index[labelled == 1] < 2) and np.all(index[labelled == 0] >= 2)
    seen = np.concatenate([_indices(b)[b["labelled"] == 0] for b in batches])
    assert len(np.unique(seen)) == len(seen) == 36        # within one unlabelled epoch (38)
    config.labelled_per_batch = 3
    assert all(b["labelled"].sum() == 3 for b in _batches(config, 8, 2))


def test_weak_stream_resumes_exactly_and_splits_over_processes():
    config = _config(labelled_fraction=0.25, labelled_per_batch=3, weak_batch="split")
    first = _batches(config, 6, 3, seed=2)
    resumed = _batches(config, 6, 1, seed=2, start_step=2)[0]
    for key in KEYS:
        np.testing.assert_array_equal(first[2][key], resumed[key], err_msg=key)
    halves = [_batches(config, 3, 1, seed=2, process_index=i, process_count=2)[0]
              for i in range(2)]
    for key in ("scale", "labelled"):
        np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), first[0][key])


def test_train_fraction_keeps_the_first_examples_all_labelled():
    batches = _batches(_config(train_fraction=0.25), 5, 4)      # first 10 examples, 2 epochs
    index = np.concatenate([_indices(b) for b in batches])
    assert index.max() < 10 and sorted(index[:10]) == list(range(10))
    assert all(b["labelled"].all() for b in batches)


def test_empty_cloud_gives_a_flagged_zero_cloud():
    example = toy_source(1)[0]                                  # example 0 has no points
    row = pipeline.example_to_features(example, _config(), None, augment=False, keys=KEYS)
    assert row["cloud_resampled"] == 1 and not row["cloud"].any()


@pytest.mark.parametrize("field,value,match", [
    ("train_fraction", 0.0, "data.train_fraction"),
    ("train_fraction", 1.5, "data.train_fraction"),
    ("labelled_fraction", 0.0, "data.labelled_fraction"),
    ("labelled_fraction", 0.99, "no unlabelled frame"),      # round(0.99·40) = 40
    ("labelled_per_batch", 8, "data.labelled_per_batch"),
    ("weak_batch", "half", "data.weak_batch"),
])
def test_bad_weak_supervision_fields_name_the_field(field, value, match):
    config = _config(**{"labelled_fraction": 0.5, "weak_batch": "split", field: value})
    with pytest.raises(ValueError, match=match):
        streams.make_plan(config, N, 8)


def test_weak_config_settings():
    from experiments.configs import weak

    supervised = weak.get_config("labelled=0.05,setting=supervised")
    assert (supervised.data.train_fraction, supervised.data.labelled_fraction) == (0.05, 1.0)
    mixed = weak.get_config("labelled=0.05")
    assert (mixed.data.train_fraction, mixed.data.labelled_fraction) == (1.0, 0.05)
    assert mixed.model.strategy == "RC2CHP_poe"
    assert mixed.data.weak_batch == "added"
    with pytest.raises(ValueError, match="applies to data.weak_batch=\"split\" only"):
        streams.make_plan(_config(labelled_fraction=0.5, labelled_per_batch=3), N, 8)
    with pytest.raises(ValueError, match="setting"):
        weak.get_config("setting=semi")


def test_prepared_image_keeps_keypoints_on_their_pixels():
    """The box-reduced stored image (k = 4 for 256 → 64) keeps a dot where keypoints_2d says."""
    from handvae.data import prepared

    example = toy_source(1, image_side=512)[0]
    example["image"] = np.zeros((512, 512, 3), np.uint8)
    example["image"][197:205, 297:305] = 255                       # centre (300.5, 200.5)
    example["keypoints_2d"] = np.tile([[300.5, 200.5]], (21, 1)).astype(np.float32)
    example["crop_side"] = np.float32(256)
    config = _config(image_size=64, heatmap_size=16)
    ready = prepared.prepare(example, 64)
    assert ready["image"].shape == (128, 128, 3) and ready["crop_side"] == 64
    for params_seed in (None, 3):
        rng = None if params_seed is None else np.random.default_rng(params_seed)
        row = pipeline.example_to_features(example, config, rng, augment=rng is not None,
                                           keys=("rgb", "keypoints_2d"))
        weights = row["rgb"].sum(-1) - row["rgb"].sum(-1).min()
        v, u = np.mgrid[:64, :64]
        peak = np.array([(weights * u).sum(), (weights * v).sum()]) / weights.sum()
        np.testing.assert_allclose(peak, row["keypoints_2d"][0], atol=0.35)
    cache = prepared.ExampleCache([example], 64, max_bytes=1 << 30)
    again = pipeline.example_to_features(cache[0], config, np.random.default_rng(3),
                                         augment=True, keys=("rgb",))
    first = pipeline.example_to_features(example, config, np.random.default_rng(3),
                                         augment=True, keys=("rgb",))
    np.testing.assert_array_equal(again["rgb"], first["rgb"])
    assert cache[0] is cache[0]                                     # kept


def test_jpeg_image_is_decoded_at_reduced_size():
    """An encoded JPEG ``image`` decodes through draft mode to the same geometry (k = 4)."""
    import io

    from PIL import Image

    from handvae.data import prepared

    example = toy_source(1, image_side=512)[0]
    yy, xx = np.mgrid[:512, :512]
    smooth = np.stack([xx // 2, yy // 2, (xx + yy) // 4], -1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(smooth).save(buffer, format="JPEG", quality=95)
    example["crop_side"] = np.float32(256)
    raw = prepared.prepare(dict(example, image=smooth), 64)
    jpeg = prepared.prepare(dict(example, image=buffer.getvalue()), 64)
    assert jpeg["image"].shape == raw["image"].shape == (128, 128, 3)
    assert np.abs(jpeg["image"].astype(int) - raw["image"]).mean() < 3
    np.testing.assert_allclose(jpeg["K_image"], raw["K_image"])
