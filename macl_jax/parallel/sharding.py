"""Shardings for train states: logical annotations where present, FSDP by shape otherwise.

Rules, in order, for every array leaf of a state:
1. A parameter created with `nnx.with_partitioning(init, ("embed", "mlp"))` carries logical axis
   names; `logical_rules` maps them to mesh axes (`model`, `fsdp`, ...).
2. Optimizer-state leaves whose path ends with a parameter's path and have its shape (Adam's `mu`,
   `nu`, ...) follow that parameter.
3. Anything else with at least `min_fsdp_size` elements is split over `fsdp` along its largest
   divisible dimension when the mesh has an `fsdp` axis larger than 1.
4. The rest is replicated (scalars, biases, norms, the step counter).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

# Logical names used by the models, mapped to mesh axes. None means replicated.
DEFAULT_LOGICAL_RULES: tuple[tuple[str, str | None], ...] = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("mlp", "model"),
    ("heads", "model"),
    ("conv_out", "model"),
    ("conv_in", None),
    ("vocab", "model"),
)


def _key_str(entry: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _path(path: Sequence[Any]) -> tuple[str, ...]:
    return tuple(_key_str(p) for p in path)


def _fsdp_spec(shape: Sequence[int], fsdp: int, min_size: int) -> P:
    if fsdp <= 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if shape[dim] % fsdp == 0:
            spec = [None] * len(shape)
            spec[dim] = "fsdp"
            return P(*spec)
    return P()


def _logical_spec(names: Sequence[str | None], shape: Sequence[int], mesh: Mesh, rules: Mapping) -> P:
    spec = []
    for name, size in zip(names, shape):
        axis = rules.get(name) if name is not None else None
        axes = (axis,) if isinstance(axis, str) else tuple(axis or ())
        axes = tuple(a for a in axes if mesh.shape.get(a, 1) > 1)
        total = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
        spec.append((axes[0] if len(axes) == 1 else axes) if axes and size % total == 0 else None)
    return P(*spec)


def infer_state_shardings(
    abstract_state: Any,
    mesh: Mesh,
    *,
    logical_rules: Sequence[tuple[str, Any]] = DEFAULT_LOGICAL_RULES,
    min_fsdp_size: int = 2**14,
) -> Any:
    """A tree of `NamedSharding` matching `abstract_state` (from `jax.eval_shape`)."""
    rules = dict(logical_rules)
    fsdp = mesh.shape.get("fsdp", 1)
    annotated: dict[tuple[str, ...], tuple[tuple[int, ...], P]] = {}

    def is_variable(x: Any) -> bool:
        return isinstance(x, nnx.Variable)

    # First pass: parameters that carry logical names.
    for path, leaf in jax.tree_util.tree_flatten_with_path(abstract_state, is_leaf=is_variable)[0]:
        if is_variable(leaf):
            meta = leaf.get_metadata()
            # The key has been renamed across flax releases.
            names = meta.get("out_sharding") or meta.get("sharding_names") or meta.get("sharding")
            value = leaf.get_value() if hasattr(leaf, "get_value") else leaf.value
            if names and hasattr(value, "shape"):
                annotated[_path(path)] = (tuple(value.shape), _logical_spec(names, value.shape, mesh, rules))

    def spec_for(path: Sequence[Any], leaf: Any) -> NamedSharding:
        shape = tuple(getattr(leaf, "shape", ()))
        key = _path(path)
        # nnx.Variable leaves flatten to (..., "value") in some versions; drop that suffix.
        if key and key[-1] == "value":
            key = key[:-1]
        for n in range(len(key), 0, -1):
            hit = annotated.get(key[-n:])
            if hit is not None and hit[0] == shape:
                return NamedSharding(mesh, hit[1])
        return NamedSharding(mesh, _fsdp_spec(shape, fsdp, min_fsdp_size))

    return jax.tree_util.tree_map_with_path(spec_for, abstract_state)
