"""The device mesh: named axes `data`, `fsdp`, `model`, built from config.

`data` replicates parameters and splits the batch; `fsdp` splits the batch *and* shards
parameters/optimizer state (ZeRO-3 style); `model` is there for tensor parallelism, which no
model uses yet: states are replicated along it and its devices see the same rows.
Exactly one axis may be -1 and absorbs the remaining devices. For multi-slice TPU jobs a second,
data-centre-network mesh (`dcn`) multiplies the per-slice one.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh

MESH_AXES = ("data", "fsdp", "model")


def resolve_mesh_shape(axes: Mapping[str, int], num_devices: int) -> tuple[int, ...]:
    """Sizes for `MESH_AXES`, with the single -1 replaced so the product is `num_devices`."""
    unknown = set(axes) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"unknown mesh axes {sorted(unknown)}; the mesh axes are {MESH_AXES}")
    sizes = [int(axes.get(name, 1)) for name in MESH_AXES]
    free = [i for i, s in enumerate(sizes) if s == -1]
    if len(free) > 1:
        raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))}: at most one axis may be -1")
    if any(s == 0 or s < -1 for s in sizes):
        raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))}: sizes must be positive or -1")
    known = math.prod(s for s in sizes if s != -1)
    if free:
        if num_devices % known:
            raise ValueError(
                f"mesh {dict(zip(MESH_AXES, sizes))} does not fit {num_devices} devices: "
                f"{num_devices} is not divisible by {known}"
            )
        sizes[free[0]] = num_devices // known
    if math.prod(sizes) != num_devices:
        raise ValueError(
            f"mesh {dict(zip(MESH_AXES, sizes))} uses {math.prod(sizes)} devices but {num_devices} are "
            "available; set one axis to -1 (e.g. --config.runtime.mesh.data=-1)"
        )
    return tuple(sizes)


def make_mesh(
    axes: Mapping[str, int] | None = None,
    *,
    dcn_axes: Mapping[str, int] | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> Mesh:
    """Builds the mesh over `devices` (default: all devices of all processes).

    Axis types are `Auto`: shardings of intermediates are left to XLA's propagation, which is what
    models written without sharding annotations expect.
    """
    devices = list(jax.devices() if devices is None else devices)
    axis_types = (AxisType.Auto,) * len(MESH_AXES)
    dcn_shape = tuple(int((dcn_axes or {}).get(name, 1)) for name in MESH_AXES)
    if any(s < 1 for s in dcn_shape):
        raise ValueError(f"dcn mesh {dict(zip(MESH_AXES, dcn_shape))}: sizes must be explicit and positive")
    if math.prod(dcn_shape) > 1:
        num_slices = math.prod(dcn_shape)
        if len(devices) % num_slices:
            raise ValueError(f"{len(devices)} devices cannot form {num_slices} slices")
        per_slice = resolve_mesh_shape(axes or {"data": -1}, len(devices) // num_slices)
        device_array = mesh_utils.create_hybrid_device_mesh(per_slice, dcn_shape, devices=devices)
        return Mesh(device_array, MESH_AXES, axis_types=axis_types)
    shape = resolve_mesh_shape(axes or {"data": -1}, len(devices))
    try:
        device_array = mesh_utils.create_device_mesh(shape, devices=devices)
    except (AssertionError, NotImplementedError, ValueError):
        # Subsets of devices (tests, partial hosts) have no physical topology to respect.
        device_array = np.asarray(devices).reshape(shape)
    return Mesh(device_array, MESH_AXES, axis_types=axis_types)
