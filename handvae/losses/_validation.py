"""Input checks shared by the losses: clear errors at trace time, naming the argument."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def check_float_array(name: str, x: jax.Array, shape: Sequence[str | int]) -> jax.Array:
    """Checks rank, fixed sizes and a floating dtype; returns ``x`` as a jax array.

    Args:
      name: argument name used in the error message.
      x: the array.
      shape: expected shape; an int fixes that dimension, a string (e.g. "B") leaves it free.

    Raises:
      ValueError: naming ``name``, the shape seen and the shape expected.
    """
    x = jnp.asarray(x)
    spec = "[" + ", ".join(str(s) for s in shape) + "]"
    if x.ndim != len(shape):
        raise ValueError(f"{name} must have rank {len(shape)} with shape {spec}, got shape "
                         f"{x.shape}.")
    for axis, (want, got) in enumerate(zip(shape, x.shape)):
        if isinstance(want, int) and want != got:
            raise ValueError(f"{name} must have shape {spec}, got shape {x.shape} "
                             f"(axis {axis} is {got}, expected {want}).")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} must be a floating-point array, got dtype {x.dtype} "
                         f"(shape {x.shape}); cast it with .astype(jnp.float32).")
    return x


def check_same_axis(names: tuple[str, str], shapes: tuple[tuple[int, ...], ...], axis: int,
                    what: str) -> None:
    """Raises a ValueError when two arrays disagree on ``axis`` (described by ``what``)."""
    a, b = shapes
    if a[axis] != b[axis]:
        raise ValueError(f"{names[0]} and {names[1]} must have the same {what} (axis {axis}), "
                         f"got {names[0]} {a} and {names[1]} {b}.")


def check_mask(name: str, mask: jax.Array | None, shape: tuple[int, ...]) -> jax.Array | None:
    """Checks an optional per-point mask of the given shape; returns it as bool or None."""
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    if mask.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} (one flag per point), got "
                         f"shape {mask.shape}.")
    return mask.astype(bool)
