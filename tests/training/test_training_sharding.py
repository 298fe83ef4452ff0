"""The ("data",) mesh: batches split along axis 0, clear errors, replicated state."""

import jax
import numpy as np
import pytest

from handvae.data import spec
from handvae.training import sharding


def test_mesh_spans_every_device():
    mesh = sharding.make_mesh()
    assert mesh.axis_names == ("data",)
    assert mesh.devices.size == jax.device_count() == 2  # tests/conftest.py forces 2


def test_shard_batch_splits_axis_zero():
    mesh = sharding.make_mesh()
    batch = spec.dummy_batch(batch_size=4, image_size=8, num_points=4, heatmap_size=4)
    sharded = sharding.shard_batch(batch, mesh)
    rgb = sharded["rgb"]
    assert rgb.shape == (4, 8, 8, 3)
    shard_shapes = sorted(s.data.shape for s in rgb.addressable_shards)
    assert shard_shapes == [(2, 8, 8, 3), (2, 8, 8, 3)]
    np.testing.assert_array_equal(np.asarray(rgb), batch["rgb"])


def test_indivisible_batch_names_the_fix():
    mesh = sharding.make_mesh()
    batch = spec.dummy_batch(batch_size=3, image_size=8, num_points=4, heatmap_size=4)
    with pytest.raises(ValueError, match=r"batch size=3 is not divisible by the 2 devices"):
        sharding.shard_batch(batch, mesh)
    with pytest.raises(ValueError, match="config.batch_size=5"):
        sharding.check_batch_size(5, mesh)


def test_disagreeing_batch_sizes_raise():
    mesh = sharding.make_mesh()
    batch = spec.dummy_batch(batch_size=4, image_size=8, num_points=4, heatmap_size=4)
    batch["scale"] = batch["scale"][:2]
    with pytest.raises(ValueError, match="disagree"):
        sharding.shard_batch(batch, mesh)


def test_replicate_puts_a_full_copy_on_each_device():
    mesh = sharding.make_mesh()
    tree = sharding.replicate({"w": np.arange(6.0).reshape(2, 3)}, mesh)
    assert all(s.data.shape == (2, 3) for s in tree["w"].addressable_shards)
    assert tree["w"].sharding.is_fully_replicated


def test_single_process_environment_does_not_initialise():
    assert sharding.maybe_initialize_distributed({}) is False
    assert sharding.maybe_initialize_distributed({"SLURM_NTASKS": "1"}) is False
