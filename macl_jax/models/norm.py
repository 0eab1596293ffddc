"""Batch norm that keeps its running statistics the way PyTorch does.

Both frameworks normalise a training batch with its biased variance (divided by n), but PyTorch
updates the running variance with the unbiased one (divided by n - 1), while `nnx.BatchNorm`
uses the biased one there too. The running variance is what inference normalises with, so a
model trained here and one trained with PyTorch drift apart by a factor n / (n - 1) per update:
11% for a batch of 10 windows reduced to one value per channel, negligible for large feature
maps. `TorchBatchNorm` is `nnx.BatchNorm` with the PyTorch update (docs/checkpoint_import.md#batch-norm).
Its state (scale, bias, mean, var) is laid out exactly as `nnx.BatchNorm`'s, so checkpoints do
not change.
"""

from __future__ import annotations

import math

import jax
from flax import nnx


class TorchBatchNorm(nnx.BatchNorm):
    """`nnx.BatchNorm` whose running variance follows PyTorch's unbiased update.

    `unbiased_running_var=False` gives Flax's biased update. With one value per channel in the
    batch (n = 1) the unbiased variance is undefined (PyTorch refuses such a batch); the biased
    update is kept then.
    """

    def __init__(self, num_features: int, *, unbiased_running_var: bool = True, **kwargs):
        super().__init__(num_features, **kwargs)
        self.unbiased_running_var = unbiased_running_var

    def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
        training = not (use_running_average if use_running_average is not None else self.use_running_average)
        if not (training and self.unbiased_running_var and mask is None):
            return super().__call__(x, use_running_average, mask=mask)
        kept = self.momentum * self.var[...]
        y = super().__call__(x, use_running_average, mask=mask)
        features = math.prod(x.shape[a] for a in ((self.axis,) if isinstance(self.axis, int) else self.axis))
        n = x.size // features  # values reduced into each channel's statistics
        if n > 1:
            # The update just made is kept + (1 - momentum) * biased var; rescale its new part.
            self.var[...] = jax.lax.stop_gradient(kept + (self.var[...] - kept) * (n / (n - 1)))
        return y
