"""Array-namespace dispatch shared by the geometry modules (never imports jax eagerly)."""

from __future__ import annotations

from typing import Any

import numpy as np


def is_jax(x: Any) -> bool:
    """True for jax arrays and tracers (their classes live in `jax.*` / `jaxlib.*`)."""
    return type(x).__module__.startswith("jax")


def namespace(*arrays: Any) -> Any:
    """`jax.numpy` when any argument is a jax array or tracer, else `numpy`.

    jax is imported only on that path so grain workers that feed numpy never load it.
    """
    if any(is_jax(a) for a in arrays):
        import jax.numpy as jnp  # lazy: jax stays out of numpy-only grain workers

        return jnp
    return np


def to_compute(x: Any, xp: Any) -> tuple[Any, Any]:
    """Returns (x in the compute dtype, the dtype results are returned in).

    numpy computes in float64 and hands back the input's float dtype (float64 for integer
    input such as truncated pixel coordinates). jax keeps the input's float dtype: under
    default settings float64 is unavailable on device, and float32 is what the models use.
    """
    if xp is np:
        x = np.asarray(x)
        out = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)
        return x.astype(np.float64, copy=False), out
    x = xp.asarray(x)
    if not xp.issubdtype(x.dtype, xp.floating):
        x = x.astype(xp.float32)
    return x, x.dtype


def swap_last(m: Any, xp: Any) -> Any:
    """Transpose of the last two axes (batched matrix transpose)."""
    return xp.swapaxes(m, -1, -2)


def check_points(x: Any, name: str, *, num_points: int | None = None, dims: tuple[int, ...] = (2,)) -> None:
    """Raises a ValueError naming `name` unless x has shape (..., num_points, d) with d in dims."""
    shape = tuple(x.shape)
    if len(shape) < 2 or shape[-1] not in dims:
        want = " or ".join(str(d) for d in dims)
        raise ValueError(
            f"{name}: expected an array of shape (..., N, {want}) (points along axis -2, coordinates last), got shape {shape}."
        )
    if num_points is not None and shape[-2] != num_points:
        raise ValueError(
            f"{name}: expected {num_points} points along axis -2, got shape {shape}; pass 68-point iBUG landmarks "
            "(reshape a flat (..., 136) array to (..., 68, 2))."
        )
