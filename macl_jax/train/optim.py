"""Optimizers shared by the MACL stages: Adam with coupled L2, as PyTorch's Adam(weight_decay=...).

`optax.add_decayed_weights` before `scale_by_adam` adds wd * param to the gradient, which is what
torch.optim.Adam's `weight_decay` does (docs/decisions.md#d6-weight-decay); the mask says which parameters it touches.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
import optax

WEIGHT_DECAY_MASKS = ("masked", "reference")


def path_names(path: tuple) -> list[str]:
    """The key names along a pytree path (dict keys, attribute names, sequence indices)."""
    return [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]


def weight_decay_mask(params: Any, mode: str) -> Any:
    """True where coupled L2 applies: everything ("reference"), or only conv/linear kernels ("masked":
    no decay on biases, norms, memory slots and loss scales)."""
    if mode not in WEIGHT_DECAY_MASKS:
        raise ValueError(f"config.optim.weight_decay_mask must be 'masked' or 'reference', got {mode!r}")

    def decays(path: tuple, leaf: Any) -> bool:
        if mode == "reference":
            return True
        return np.ndim(leaf) >= 2 and "slots" not in path_names(path)

    return jax.tree_util.tree_map_with_path(decays, params)


def adam_l2(
    learning_rate: float | optax.Schedule,
    *,
    weight_decay: float,
    mask_mode: str,
    grad_clip_norm: float = 0.0,
    slow: Callable[[list[str]], bool] | None = None,
    slow_factor: float = 1.0,
) -> optax.GradientTransformation:
    """[clip by global norm] -> coupled L2 -> Adam -> learning rate [-> x slow_factor where slow(path)].

    `learning_rate` is turned into a schedule when it is a number, so the optimizer state has the
    same structure whatever the schedule (a run can resume with another LR drop). `slow` marks
    parameters trained at `slow_factor` times the learning rate (e.g. a pretrained branch being
    fine-tuned); 0 freezes them.
    """
    schedule = learning_rate if callable(learning_rate) else optax.constant_schedule(float(learning_rate))
    parts = []
    if grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(float(grad_clip_norm)))
    if weight_decay > 0:
        parts.append(optax.add_decayed_weights(float(weight_decay), mask=lambda p: weight_decay_mask(p, mask_mode)))
    parts += [optax.scale_by_adam(), optax.scale_by_learning_rate(schedule)]
    if slow is not None and slow_factor != 1.0:
        mask = lambda p: jax.tree_util.tree_map_with_path(lambda path, _: bool(slow(path_names(path))), p)
        parts.append(optax.masked(optax.scale(float(slow_factor)), mask))
    return optax.chain(*parts)
