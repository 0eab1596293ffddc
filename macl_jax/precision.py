"""Compute dtypes: parameters stay float32; activations use the configured compute dtype."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def compute_dtype(name: str = "auto") -> jnp.dtype:
    """`auto` is bfloat16 on GPU/TPU and float32 on CPU (bf16 matmuls are slow on CPUs)."""
    if name == "auto":
        return jnp.dtype(jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16)
    try:
        return jnp.dtype(name)
    except TypeError as exc:
        raise ValueError(f"unknown compute dtype {name!r}; use auto, float32 or bfloat16") from exc
