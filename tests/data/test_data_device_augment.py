"""The device path (handvae.data.device_augment) against the host path, resume, identity, loop.

Tolerances, and why: given the same draws, every label is the host's to float32 rounding
(the host computes the geometry in float64). The image is warped by the same rule on both
sides (Pillow's bilinear, truncated; the host calls Pillow, the device replays it as a
gather), so it is the host's exactly except where the float32 sample position puts the
bilinear value across an integer: one level (0.0175 after normalisation) in a few values.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from contract_fixtures import toy_source

from experiments.configs.common import get_base_config, shrink_to_tiny
from handvae.data import augment as augment_lib
from handvae.data import decoded_cache, device_augment, pipeline, prepared, spec



@functools.partial(jax.jit, static_argnames="augment")
def _draw(step, rows, pools, augment=True):
    return device_augment.sample_params(device_augment.row_keys(0, step, rows), pools, 256, 64,
                                        augment=augment)


LEVEL = float(np.max(1 / (255 * spec.RGB_STD)))    # one uint8 level after normalisation


def _data_config(**fields):
    config = shrink_to_tiny(get_base_config("synthetic")).data
    for name, value in fields.items():
        config[name] = value
    return config


def _examples(num: int, size: int, *, pools=(40, 100, 0)):
    """Prepared toy examples (k = 2: 128² stored, 64² window, crop box 32 px at S = 32) with
    float16-exact point pools of the given sizes, an off-centre principal point."""
    examples = []
    rng = np.random.default_rng(3)
    for i, example in enumerate(toy_source(num, image_side=128, points=max(pools))):
        example = dict(example)
        example["K_image"] = np.array(example["K_image"], np.float32)
        example["K_image"][:2, 2] += (7.25, -3.5)
        pool = pools[i % len(pools)]
        example["points"] = rng.normal(0, 1, (pool, 3)).astype(np.float16).astype(np.float32)
        examples.append(prepared.prepare(example, size))
    return examples


def _host_and_device(examples, params, indices, config):
    host = [pipeline.features_from_params(e, config, p, ix)
            for e, p, ix in zip(examples, params, indices)]
    host = pipeline._stack(host)
    raw = pipeline._stack([pipeline.example_to_raw(e, config.image_size) for e in examples],
                          keep_dtypes=True)
    num_points = int(config.num_points)
    draws = device_augment.Params(
        scale=jnp.array([p.scale for p in params], jnp.float32),
        shift=jnp.array([p.shift for p in params], jnp.float32),
        angle=jnp.array([p.angle for p in params], jnp.float32),
        hue=jnp.array([p.hue for p in params], jnp.float32),
        cloud_index=jnp.array(np.stack([np.zeros(num_points, int) if ix is None else ix
                                        for ix in indices]), jnp.int32))
    device = jax.jit(lambda r, d: device_augment.features(
        r, d, image_size=config.image_size, heatmap_size=config.heatmap_size,
        heatmap_sigma=config.heatmap_sigma, num_points=num_points,
        zoom=config.augment_zoom))(raw, draws)
    return host, jax.device_get(device)


@pytest.mark.parametrize("zoom", ["out", "in"])
def test_device_batch_equals_host_batch_given_the_same_draws(zoom):
    config = _data_config(image_size=32, augment_zoom=zoom)
    examples = _examples(6, 32)
    rng = np.random.default_rng(0)
    params = [augment_lib.sample_params(rng) for _ in examples]
    indices = [None if not len(e["points"]) else
               rng.choice(len(e["points"]), config.num_points,
                          replace=len(e["points"]) < config.num_points) for e in examples]
    host, device = _host_and_device(examples, params, indices, config)
    assert set(device) == set(host) == set(spec.BATCH_KEYS)
    shapes = spec.batch_shapes(len(examples), 32, config.num_points, config.heatmap_size)
    for key, value in device.items():
        assert value.shape == shapes[key] and value.dtype == np.float32, key
    difference = np.abs(device["rgb"] - host["rgb"])
    assert difference.max() <= LEVEL + 1e-5           # one uint8 level at most
    assert (difference > 1e-4).mean() < 0.01          # in under 1 % of the values
    np.testing.assert_allclose(device["keypoints_2d"], host["keypoints_2d"], atol=1e-3)
    np.testing.assert_allclose(device["heatmaps"], host["heatmaps"], atol=1e-4)
    for key in ("pose", "root", "cloud"):
        np.testing.assert_allclose(device[key], host[key], atol=1e-5, err_msg=key)
    for key in ("visible", "scale", "labelled", "cloud_resampled"):
        np.testing.assert_array_equal(device[key], host[key], err_msg=key)
    assert host["cloud_resampled"].tolist() == [1, 0, 1] * 2   # pools 40, 100, 0 of 64


def test_identity_reproduces_the_centre_crop():
    config = _data_config(image_size=32)
    examples = _examples(3, 32)
    identity = [augment_lib.IDENTITY] * 3
    indices = [np.arange(config.num_points) % max(1, len(e["points"])) for e in examples]
    host, device = _host_and_device(examples, identity, indices, config)
    for example, rgb_host, rgb_device in zip(examples, host["rgb"], device["rgb"]):
        side = example["image"].shape[0]                 # 64: crop box of 32 px in the middle
        start = (side - 32) // 2
        crop = example["image"][start:start + 32, start:start + 32].astype(np.float32)
        expected = crop / 255 / spec.RGB_STD - spec.RGB_MEAN / spec.RGB_STD
        np.testing.assert_allclose(rgb_device, expected, atol=1e-5)
        np.testing.assert_allclose(rgb_host, expected, atol=1e-5)


def test_draws_are_in_range_and_depend_only_on_seed_step_and_row():
    rows = jnp.arange(64)
    pools = jnp.array([0, 10, 64, 256] * 16)
    draws = jax.device_get(_draw(5, rows, pools))
    assert np.all((draws.scale >= 1.0) & (draws.scale <= 1.2))
    assert np.all(np.abs(draws.shift) <= 20) and np.all(np.abs(draws.angle) <= np.pi)
    assert np.all(np.abs(draws.hue) <= 0.1) and draws.scale.std() > 0.02
    for row, pool in enumerate(np.asarray(pools)):
        index = draws.cloud_index[row]
        assert index.min() >= 0 and index.max() < max(1, pool)
        if pool >= 64:
            assert len(set(index.tolist())) == 64       # without replacement
    # Row r of step k is the same wherever it sits in the batch.
    backwards = jax.device_get(_draw(5, rows[::-1], pools[::-1]))
    np.testing.assert_array_equal(backwards.angle[::-1], draws.angle)
    np.testing.assert_array_equal(backwards.cloud_index[::-1], draws.cloud_index)
    assert not np.allclose(np.asarray(_draw(6, rows, pools).angle), draws.angle)
    identity = jax.device_get(_draw(5, rows, pools, augment=False))
    assert np.all(identity.scale == 1) and np.all(identity.angle == 0)
    np.testing.assert_array_equal(identity.cloud_index, draws.cloud_index)


@pytest.fixture
def cached_config(rhd_synthetic_data_dir, tmp_path):
    return _data_config(data_dir=rhd_synthetic_data_dir, decoded_cache=True,
                        decoded_cache_dir=str(tmp_path / "cache"), augment_on="device")


def test_a_resumed_stream_draws_what_an_uninterrupted_one_draws(cached_config):
    batch_fn = jax.jit(device_augment.make_batch_fn(cached_config, seed=7))
    keys = spec.BATCH_KEYS

    def stream(start, count):
        with pipeline.train_batches(cached_config, 4, seed=7, start_step=start, raw=True,
                                    keys=keys) as raw_batches:
            return [jax.device_get(batch_fn(next(raw_batches), jnp.int32(start + i)))
                    for i in range(count)]

    straight, resumed = stream(0, 5), stream(3, 2)
    for a, b in zip(straight[3:], resumed):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not np.array_equal(straight[3]["rgb"], straight[4]["rgb"])


def test_raw_rows_are_the_decoded_cache_rows(cached_config):
    cache = decoded_cache.open_or_build(cached_config, "train", cached_config.image_size)
    with pipeline.train_batches(cached_config, 2, seed=0, raw=True) as raw_batches:
        raw = next(raw_batches)
    assert raw["image"].dtype == np.uint8 and raw["points"].dtype == np.float16
    assert raw["image"].shape[1:] == cache[0]["image"].shape
    assert raw["points"].shape[1:] == (pipeline.MAX_POINTS, 3)
    images = {cache[i]["image"].tobytes() for i in range(len(cache))}
    assert all(row.tobytes() in images for row in raw["image"])


def test_augment_on_resolves_per_backend_and_names_the_fix():
    assert device_augment.resolve_augment_on(_data_config(augment_on="auto"), "cpu") == "host"
    assert device_augment.resolve_augment_on(
        _data_config(augment_on="auto", decoded_cache=True), "cpu") == "host"
    assert device_augment.resolve_augment_on(
        _data_config(augment_on="auto", decoded_cache=True), "gpu") == "device"
    assert device_augment.resolve_augment_on(_data_config(augment_on="auto"), "gpu") == "host"
    assert device_augment.resolve_augment_on(
        _data_config(augment_on="device", decoded_cache=True), "cpu") == "device"
    with pytest.raises(ValueError, match="decoded_cache=true"):
        device_augment.resolve_augment_on(_data_config(augment_on="device"), "gpu")
    with pytest.raises(ValueError, match="data.augment_on must be one of"):
        device_augment.resolve_augment_on(_data_config(augment_on="gpu"), "gpu")
