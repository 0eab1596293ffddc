"""A multi-layer perceptron with optional batch norm and dropout."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class MLP(nnx.Module):
    """Dense -> [BatchNorm] -> gelu -> [dropout], `depth` times, then a linear head.

    Batch statistics are computed over the global batch (the step is jitted over the sharded
    batch), so results do not depend on the number of devices.
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        out_features: int,
        *,
        depth: int = 2,
        use_batchnorm: bool = True,
        dropout: float = 0.0,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        dims = [in_features] + [hidden] * depth
        # A bias in front of batch norm is cancelled by it and only receives rounding noise,
        # which Adam would amplify into device-count-dependent updates.
        self.layers = nnx.List(
            [
                nnx.Linear(d_in, d_out, use_bias=not use_batchnorm, dtype=dtype, rngs=rngs)
                for d_in, d_out in zip(dims[:-1], dims[1:])
            ]
        )
        self.norms = nnx.List(
            [nnx.BatchNorm(hidden, momentum=0.9, dtype=jnp.float32, rngs=rngs) for _ in range(depth)]
            if use_batchnorm
            else []
        )
        self.dropout_rate = dropout
        self.head = nnx.Linear(hidden, out_features, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool, rngs: nnx.Rngs | None = None) -> jax.Array:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if self.norms:
                x = self.norms[i](x.astype(jnp.float32), use_running_average=not train).astype(x.dtype)
            x = jax.nn.gelu(x)
            if train and self.dropout_rate > 0:
                keep = jax.random.bernoulli(rngs.dropout(), 1.0 - self.dropout_rate, x.shape)
                x = jnp.where(keep, x / (1.0 - self.dropout_rate), 0).astype(x.dtype)
        return self.head(x).astype(jnp.float32)
