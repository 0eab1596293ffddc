"""Spectral normalisation (Miyato et al. 2018) as a reparameterisation, the way PyTorch applies it.

A layer keeps its raw weight W as an `nnx.Param` and uses W / sigma(W) in every call, where sigma
is the largest singular value of W reshaped to (fan_in, fan_out), estimated by power iteration
with a persistent vector `u` (an `SpectralU` variable, not a parameter). Gradients flow through
the division, with u and v held constant, as in `torch.nn.utils.spectral_norm`.

Why not `flax.nnx.SpectralNorm`: it writes the normalised weight back into the parameter, so the
optimizer would update W / sigma instead of W and the raw weight is lost after one call.

In training one power step per call runs and u is written back; in evaluation u is used
as stored, which makes evaluation deterministic and free of state changes (PyTorch's eval mode).
Power iteration and the division run in float32 whatever the compute dtype.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["SpectralU", "SNConv", "SNLinear", "spectral_normalize"]

_EPS = 1e-12


class SpectralU(nnx.Variable):
    """The power-iteration vector of a spectrally normalised weight (state, never trained)."""


def _l2_normalize(x: jax.Array) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x), _EPS)


def spectral_normalize(
    kernel: jax.Array, u: jax.Array, *, n_steps: int = 1
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(kernel / sigma, the updated u, sigma) for a kernel whose last axis is the output axis.

    `u` has the output size. `n_steps` power iterations refine it (0 uses it as given); the
    gradient reaches `kernel` through sigma = v^T W u with u and v held constant.
    """
    w = kernel.astype(jnp.float32).reshape(-1, kernel.shape[-1])  # (fan_in, out)
    u = u.astype(jnp.float32)
    v = _l2_normalize(w @ u)
    for _ in range(n_steps):
        u = _l2_normalize(w.T @ v)
        v = _l2_normalize(w @ u)
    u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
    sigma = v @ (w @ u)
    return (w / sigma).reshape(kernel.shape).astype(kernel.dtype), u, sigma


def _initial_u(rngs: nnx.Rngs, size: int) -> jax.Array:
    return _l2_normalize(jax.random.normal(rngs.params(), (size,), jnp.float32))


class _SpectralMixin:
    """Shared by the spectrally normalised layers: `self.u`, `self.n_steps`, `self.use_running_average`.

    `use_running_average` is the attribute `nnx.Module.eval()` sets (and `train()` clears), the
    same switch as batch norm's: True uses u as stored and leaves it unchanged.
    """

    def normalised_kernel(self, kernel: jax.Array) -> jax.Array:
        update = not self.use_running_average
        w, u, _ = spectral_normalize(kernel, self.u[...], n_steps=self.n_steps if update else 0)
        if update:
            self.u[...] = u
        return w


class SNConv(_SpectralMixin, nnx.Module):
    """A 2-D convolution (NHWC, like `nnx.Conv`) whose kernel is spectrally normalised.

    `padding` is an int (symmetric) or an explicit ((top, bottom), (left, right)).
    """

    def __init__(
        self, in_features: int, out_features: int, kernel_size: int | Sequence[int] = 3, *,
        strides: int = 1, padding: int | Sequence[tuple[int, int]] = 1, use_bias: bool = True,
        kernel_init=nnx.initializers.xavier_normal(), n_steps: int = 1,
        dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs,
    ):
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.kernel = nnx.Param(kernel_init(rngs.params(), (*ks, in_features, out_features), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if use_bias else None
        self.u = SpectralU(_initial_u(rngs, out_features))
        self.strides = (strides, strides)
        self.padding = ((padding, padding), (padding, padding)) if isinstance(padding, int) else tuple(map(tuple, padding))
        self.n_steps, self.use_running_average, self.dtype = n_steps, False, dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        w = self.normalised_kernel(self.kernel[...])
        y = jax.lax.conv_general_dilated(
            x.astype(self.dtype), w.astype(self.dtype), self.strides, self.padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


class SNLinear(_SpectralMixin, nnx.Module):
    """A dense layer (..., in) -> (..., out) whose kernel is spectrally normalised."""

    def __init__(
        self, in_features: int, out_features: int, *, use_bias: bool = True,
        kernel_init=nnx.initializers.xavier_normal(), n_steps: int = 1,
        dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs,
    ):
        self.kernel = nnx.Param(kernel_init(rngs.params(), (in_features, out_features), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if use_bias else None
        self.u = SpectralU(_initial_u(rngs, out_features))
        self.n_steps, self.use_running_average, self.dtype = n_steps, False, dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        w = self.normalised_kernel(self.kernel[...])
        y = x.astype(self.dtype) @ w.astype(self.dtype)
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y
