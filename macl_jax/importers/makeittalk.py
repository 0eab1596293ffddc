"""MakeItTalk's image-to-image renderer (`ResUnetGenerator`, saved as `{'G': state_dict, 'opt', 'epoch'}`).

The authors' generator is a chain of nested `ResUnetSkipConnectionBlock`s, each an `nn.Sequential`
called `model`; the next level down sits at a fixed index of that list. Our `ResUnetGenerator`
holds the same levels as attributes (`net`, `net/inner`, ...). The released weights work in BGR
in [0, 1] without a tanh inside the network, so the run gets `model.io = "makeittalk"`.
"""

from __future__ import annotations

from typing import Any

from macl_jax.checkpoint.foreign import conv_kernel
from macl_jax.importers.common import Importer, Tensors, assign_module, mapping_user
from macl_jax.train import renderer
from macl_jax.train.state import TrainState

# Positions in each level's nn.Sequential: (down_norm, down residual blocks, next level, up conv,
# up norm, up residual blocks); None where the level has no such layer.
_OUTERMOST = (None, (2, 3), 4, 6, None, ())
_MIDDLE = (1, (3, 4), 5, 7, 8, (10, 11))
_INNERMOST = (None, (2, 3), None, 5, 6, (8, 9))


def _batch_norm(flax: str, torch: str) -> dict[str, tuple[str, Any]]:
    return {f"{flax}/scale": (f"{torch}.weight", None), f"{flax}/bias": (f"{torch}.bias", None),
            f"{flax}/mean": (f"{torch}.running_mean", None), f"{flax}/var": (f"{torch}.running_var", None)}


def _residual(flax: str, torch: str) -> dict[str, tuple[str, Any]]:
    # ResidualBlock.block: conv, BN, ReLU, conv, BN
    return {f"{flax}/conv1/kernel": (f"{torch}.block.0.weight", conv_kernel), **_batch_norm(f"{flax}/norm1", f"{torch}.block.1"),
            f"{flax}/conv2/kernel": (f"{torch}.block.3.weight", conv_kernel), **_batch_norm(f"{flax}/norm2", f"{torch}.block.4")}


def resunet_mapping(num_downs: int) -> dict[str, tuple[str, Any]]:
    """Flax path of `ResUnetGenerator` -> (MakeItTalk state-dict name, converter)."""
    mapping: dict[str, tuple[str, Any]] = {}
    flax, torch = "net", "model.model"
    for level in range(num_downs):
        layout = _OUTERMOST if level == 0 else _INNERMOST if level == num_downs - 1 else _MIDDLE
        down_norm, down_res, inner, up, up_norm, up_res = layout
        mapping[f"{flax}/down/kernel"] = (f"{torch}.0.weight", conv_kernel)
        if down_norm is not None:
            mapping |= _batch_norm(f"{flax}/down_norm", f"{torch}.{down_norm}")
        for i, index in enumerate(down_res):
            mapping |= _residual(f"{flax}/down_res/{i}", f"{torch}.{index}")
        mapping[f"{flax}/up/kernel"] = (f"{torch}.{up}.weight", conv_kernel)
        if up_norm is not None:
            mapping |= _batch_norm(f"{flax}/up_norm", f"{torch}.{up_norm}")
        for i, index in enumerate(up_res):
            mapping |= _residual(f"{flax}/up_res/{i}", f"{torch}.{index}")
        if inner is not None:
            flax, torch = f"{flax}/inner", f"{torch}.{inner}.model"
    return mapping


def fill(config: Any, task: renderer.RendererTask, state: TrainState, tensors: Tensors) -> tuple[TrainState, set[str]]:
    mapping = resunet_mapping(config.model.num_downs)
    params, rest = dict(state.params), dict(state.model_state)
    params["g"], rest["g"] = assign_module(task.graphdef_of("g"), params["g"], rest["g"], tensors, mapping)
    used = mapping_user(mapping) | {n for n in tensors if n.endswith("num_batches_tracked")}
    return state.replace(params=params, model_state=rest), used


IMPORTER = Importer(
    name="makeittalk-renderer",
    stage="renderer",
    default_config="configs/renderer.py:full",
    required=("model.io=makeittalk",),
    container="G",
    signature="model.model.0.weight",
    build_task=renderer.build_task,
    fill=fill,
    description="MakeItTalk image-to-image renderer",
)
