"""Data parallelism over every device: a ``("data",)`` mesh, replicated state, split batches.

Parameters, optimiser state and BatchNorm statistics are replicated on every device; each
batch is split along axis 0. Under ``jax.jit`` the program keeps its global meaning, so
BatchNorm statistics and the loss are computed over the whole (global) batch whatever the
number of devices. On several hosts each process loads its own slice of the global batch
(``process_index``/``process_count`` of the pipeline) and :func:`shard_batch` stitches the
slices into one global array.

Decision (moved from WORKSPACE.md)

**Multi-host: one `jax.distributed` start-up, gloo on CPU** (paper silent: it trained on
one GPU). `maybe_initialize_distributed` sets `jax_cpu_collectives_implementation=gloo`
before `jax.distributed.initialize`, so CPU processes form one job; accelerators use their
own collectives. Two processes × 1 CPU device train (and resume) to the parameters of one
process × 2 devices within 1e-5 (`tests/training/test_training_multihost.py`, slow). The two
orbax managers get distinct barrier prefixes (`latest`, `best`): both save the final step
at once, and with orbax's default names their `_async_write_complete.<step>` barriers
collided and aborted the job (in one of two test runs before the fix).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
MEMBERS_AXIS = "members"   # a population's member axis (handvae.training.population)

# Environment variables that say this process is one of several (set by a launcher).
_MULTI_PROCESS_ENV = ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE",
                      "HANDVAE_DISTRIBUTED")


def maybe_initialize_distributed(environ: Mapping[str, str] | None = None) -> bool:
    """Calls ``jax.distributed.initialize`` when the environment describes several processes.

    Recognised: ``JAX_COORDINATOR_ADDRESS`` (+ ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``),
    ``SLURM_NTASKS`` > 1, ``OMPI_COMM_WORLD_SIZE`` > 1 (auto-detected by JAX) or
    ``HANDVAE_DISTRIBUTED=1`` (let JAX auto-detect, e.g. on TPU pods).

    Must run before any other JAX call. Returns whether it initialised.
    """
    env = os.environ if environ is None else environ
    multi = ("JAX_COORDINATOR_ADDRESS" in env or int(env.get("SLURM_NTASKS", "1")) > 1
             or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
             or env.get("HANDVAE_DISTRIBUTED", "0") == "1")
    if not multi:
        return False
    # CPU devices of several processes talk through gloo (over TCP); without it a CPU mesh
    # spanning processes cannot run collectives. Accelerators use their own (NCCL, ICI).
    jax.config.update("jax_cpu_collectives_implementation",
                      env.get("HANDVAE_CPU_COLLECTIVES", "gloo"))
    if "JAX_COORDINATOR_ADDRESS" in env:
        jax.distributed.initialize(
            coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(env["JAX_NUM_PROCESSES"]) if "JAX_NUM_PROCESSES" in env else None,
            process_id=int(env["JAX_PROCESS_ID"]) if "JAX_PROCESS_ID" in env else None)
        return True
    jax.distributed.initialize()
    return True


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis ``("data",)`` mesh over ``devices`` (default: every device of every host)."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("make_mesh needs at least one device")
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def make_population_mesh(num_members: int, devices: Sequence[jax.Device] | None = None
                         ) -> Mesh:
    """A ``("members", "data")`` mesh for a population of ``num_members`` runs.

    The members axis takes the largest share of the devices that divides ``num_members``
    (members never straddle devices unevenly); each member's batch is split over the rest.
    E.g. 8 devices: K = 8 → 8 × 1, K = 4 → 4 × 2, K = 3 → 1 × 8; 2 devices, K = 2 → 2 × 1.
    """
    devices = jax.devices() if devices is None else list(devices)
    if not devices or num_members < 1:
        raise ValueError(f"make_population_mesh needs devices and num_members >= 1, got "
                         f"{len(devices)} devices and num_members={num_members}")
    members = math.gcd(num_members, len(devices))
    return Mesh(np.asarray(devices).reshape(members, len(devices) // members),
                (MEMBERS_AXIS, DATA_AXIS))


def member_sharded(mesh: Mesh) -> NamedSharding:
    """A population's stacked pytree [K, ...]: axis 0 split over ``members``."""
    return NamedSharding(mesh, PartitionSpec(MEMBERS_AXIS))


def member_batch_sharded(mesh: Mesh) -> NamedSharding:
    """One batch per member [K, B, ...]: members over ``members``, B over ``data``."""
    return NamedSharding(mesh, PartitionSpec(MEMBERS_AXIS, DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of parameters and optimiser state: a full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """The sharding of a batch: axis 0 split over the ``data`` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, *, name: str = "config.batch_size") -> None:
    """Raises a ValueError naming the fix when the global batch does not split evenly."""
    num_devices = mesh.shape[DATA_AXIS]
    if batch_size % num_devices != 0:
        raise ValueError(
            f"{name}={batch_size} is not divisible by the {num_devices} devices of the "
            f"{mesh.axis_names} mesh's 'data' axis; set {name} to a multiple of {num_devices} "
            f"(e.g. {max(num_devices, batch_size - batch_size % num_devices)}) or run on "
            "fewer devices (e.g. CUDA_VISIBLE_DEVICES)")
    if batch_size % jax.process_count() != 0:
        raise ValueError(f"{name}={batch_size} is not divisible by the "
                         f"{jax.process_count()} processes")


def shard_batch(batch: Mapping[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
    """Places this process's slice of a batch on the mesh, split along axis 0.

    Args:
      batch: dict of host arrays [B_local, ...] (the batch contract of
        ``handvae.data.spec``); on one host B_local is the global batch size.
      mesh: the ``("data",)`` mesh.

    Returns:
      dict of global ``jax.Array`` [B_local · process_count, ...] sharded over ``data``.

    Raises:
      ValueError: when the global batch does not divide by the number of devices, or when
        the entries disagree on the batch size.
    """
    sizes = {k: np.shape(v)[0] for k, v in batch.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"batch entries disagree on the batch size (axis 0): {sizes}")
    local_size = next(iter(sizes.values()))
    check_batch_size(local_size * jax.process_count(), mesh, name="batch size")
    sharding = batch_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in batch.items()}


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Copies a pytree of host or device arrays onto every device of ``mesh``."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda x: jax.device_put(x, sharding), tree)
