"""Training: state, schedules, ``("data",)``-mesh sharding, jitted steps, checkpoints, loop.

The public entry points::

    from handvae.training import train_and_evaluate, restore_for_inference
"""

from handvae.training.checkpoint import Checkpoints, restore_for_inference
from handvae.training.loop import NonFiniteLossError, train_and_evaluate
from handvae.training.schedules import beta_schedule, learning_rate_schedule
from handvae.training.sharding import make_mesh, maybe_initialize_distributed, shard_batch
from handvae.training.state import TrainState, create_train_state, make_optimizer
from handvae.training.step import make_eval_step, make_train_step, train_step

__all__ = [
    "Checkpoints", "NonFiniteLossError", "TrainState", "beta_schedule", "create_train_state",
    "learning_rate_schedule", "make_eval_step", "make_mesh", "make_optimizer",
    "make_train_step", "maybe_initialize_distributed", "restore_for_inference", "shard_batch",
    "train_and_evaluate", "train_step",
]
