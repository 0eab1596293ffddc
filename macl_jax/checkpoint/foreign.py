"""PyTorch checkpoints into Flax NNX, without torch.

A torch zip archive (``torch.save`` since torch 1.6, ``torch.jit.save``) is a zip holding
``<archive>/data.pkl`` plus one raw little-endian file per storage, ``<archive>/data/<key>``.
``read_torch_tensors`` unpickles ``data.pkl`` with an Unpickler that imports nothing: torch's
tensor rebuild functions become numpy stand-ins, and every other class (TorchScript
``__torch__.*`` modules, ``nn.Module`` subclasses, argparse namespaces, ...) becomes an inert
record of its arguments and state, so untrusted files cannot run code. The layout converters and
``assign`` then move the arrays into an ``nnx.State``.
"""

from __future__ import annotations

import builtins
import collections
import difflib
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import ml_dtypes  # bfloat16 / float8 numpy dtypes (a dependency of jax)
import numpy as np
from flax import nnx

from macl_jax.checkpoint.manager import CheckpointError

__all__ = [
    "ForeignCheckpointError",
    "assign",
    "conv_kernel",
    "conv_transpose_kernel",
    "linear_kernel",
    "read_torch_tensors",
    "unused",
]

Converter = Callable[[np.ndarray], np.ndarray]


class ForeignCheckpointError(CheckpointError):
    """A torch file that cannot be read, or tensors that do not fit the Flax state."""


# torch dtype name -> numpy dtype.
_DTYPES: dict[str, Any] = {
    "float64": np.float64, "float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16,
    "complex128": np.complex128, "complex64": np.complex64,
    "int64": np.int64, "int32": np.int32, "int16": np.int16, "int8": np.int8,
    "uint64": np.uint64, "uint32": np.uint32, "uint16": np.uint16, "uint8": np.uint8,
    "bool": np.bool_,
    "float8_e4m3fn": ml_dtypes.float8_e4m3fn, "float8_e5m2": ml_dtypes.float8_e5m2,
    "float8_e4m3fnuz": ml_dtypes.float8_e4m3fnuz, "float8_e5m2fnuz": ml_dtypes.float8_e5m2fnuz,
}
# Typed storage classes of _rebuild_tensor_v2 (TorchScript names one for every dtype);
# UntypedStorage (bytes) comes with _rebuild_tensor_v3, which names the dtype itself.
_STORAGES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "UInt16Storage": "uint16", "UInt32Storage": "uint32", "UInt64Storage": "uint64",
    "Float8_e4m3fnStorage": "float8_e4m3fn", "Float8_e5m2Storage": "float8_e5m2",
    "Float8_e4m3fnuzStorage": "float8_e4m3fnuz", "Float8_e5m2fnuzStorage": "float8_e5m2fnuz",
    "UntypedStorage": "uint8",
}
# Magic number that starts a legacy (non-zip) torch.save pickle, itself pickled as a long.
_LEGACY_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)[2:]


class _Dtype(str):
    """A torch dtype global (``torch.float32``), as its name."""


class _Storage:
    def __init__(self, key: str, dtype: str, numel: int) -> None:
        self.key, self.dtype, self.numel = key, dtype, numel


class _Tensor:
    """A tensor not yet read: its storage and view geometry (offset and strides in elements)."""

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple, dtype: str) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)
        self.dtype = dtype


class _Stub:
    """Stand-in for any class the Unpickler will not import; keeps what was pickled into it."""

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> _Stub:  # NEWOBJ calls only __new__, REDUCE both
        self = super().__new__(cls)
        self._args, self._state = args, kwargs or None
        return self

    def __setstate__(self, state: Any) -> None:
        self._state = state

    def __repr__(self) -> str:
        return f"<stand-in {self.qualname}>"


def _rebuild_tensor(storage, offset, size, stride, *_):
    return _Tensor(storage, offset, size, stride, storage.dtype)


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, *_):
    return _Tensor(storage, offset, size, stride, str(dtype))


def _rebuild_from_type(func, new_type, args, state):
    return func(*args)  # a Parameter or tensor subclass: the data is all we keep


def _first(value, *_):
    return value  # _rebuild_parameter(data, ...), jit build_intlist(list), restore_type_tag(v, t)


_FUNCTIONS = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _first,
    ("torch._utils", "_rebuild_parameter_with_state"): _first,
    ("torch._tensor", "_rebuild_from_type"): _rebuild_from_type,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{("builtins", n): getattr(builtins, n) for n in ("set", "frozenset", "slice", "complex", "range")},
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, path: str) -> None:
        super().__init__(file)
        self._path, self._storages = path, {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _FUNCTIONS:
            return _FUNCTIONS[(module, name)]
        if module == "torch" and name in _DTYPES:
            return _Dtype(name)
        if module in ("torch", "torch.storage") and name.endswith("Storage"):
            if name not in _STORAGES:
                raise ForeignCheckpointError(
                    f"{self._path}: holds a {module}.{name}, a tensor type this reader does not support; "
                    "convert those tensors to a plain float or integer dtype and save again"
                )
            return _Dtype(_STORAGES[name])
        if module == "torch.jit._pickle" and (name.startswith("build_") or name == "restore_type_tag"):
            return _first
        if module.startswith("torch") and re.fullmatch(r"_rebuild_\w+", name):
            raise ForeignCheckpointError(
                f"{self._path}: holds tensors rebuilt by {module}.{name} (quantized, sparse, nested or "
                "device-only tensors), which this reader does not support; convert them to dense "
                "tensors (t.dequantize() / t.to_dense() / t.cpu()) and save again"
            )
        return type(name, (_Stub,), {"qualname": f"{module}.{name}"})

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise ForeignCheckpointError(f"{self._path}: unknown persistent record {pid!r} in data.pkl")
        _, dtype, key, _location, numel = pid
        return self._storages.setdefault(key, _Storage(str(key), str(dtype), int(numel)))


def _open_archive(path: Path) -> tuple[zipfile.ZipFile, str]:
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(64)
        if head.startswith(b"\x80") and _LEGACY_MAGIC in head:
            raise ForeignCheckpointError(
                f"{path}: a legacy (non-zip) torch.save pickle, which is read only with torch; "
                "re-save it in zip format with torch>=1.6: torch.save(torch.load(p), new_p)"
            )
        raise ForeignCheckpointError(
            f"{path}: not a torch checkpoint (not a zip archive); expected a file written by "
            "torch.save (torch>=1.6) or torch.jit.save"
        )
    zf = zipfile.ZipFile(path)
    tops = [n[: -len("/data.pkl")] for n in zf.namelist() if re.fullmatch(r"[^/]+/data\.pkl", n)]
    if len(tops) != 1:
        zf.close()
        raise ForeignCheckpointError(
            f"{path}: a zip archive but not a torch one: expected exactly one '<archive>/data.pkl', "
            f"found {len(tops)}; re-save it with torch.save or torch.jit.save"
        )
    return zf, tops[0]


def _walk(obj: Any, prefix: str, out: dict[str, _Tensor], ancestors: set[int]) -> None:
    """Collects tensors under dotted names; a shared (tied) object appears under each name."""
    if isinstance(obj, _Tensor):
        out[prefix] = obj
        return
    if id(obj) in ancestors:
        return
    if isinstance(obj, Mapping):
        if {"_parameters", "_buffers", "_modules"} <= obj.keys():
            # A pickled nn.Module's __dict__: flatten like state_dict does.
            obj = {**obj["_parameters"], **obj["_buffers"], **obj["_modules"]}
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    elif isinstance(obj, _Stub):
        items = [(None, obj._state), (None, obj._args)]
    else:
        return
    ancestors.add(id(obj))
    for key, value in items:
        name = prefix if key is None else f"{prefix}.{key}" if prefix else str(key)
        _walk(value, name, out, ancestors)
    ancestors.discard(id(obj))


def _numpy_dtype(name: str, tensor: str, path: Path) -> np.dtype:
    dtype = _DTYPES.get(name)
    if dtype is None:
        raise ForeignCheckpointError(f"{path}: tensor {tensor!r} has dtype {name}, which is not supported")
    return np.dtype(dtype)


def _materialize(t: _Tensor, name: str, raw: bytes, big_endian: bool, path: Path) -> np.ndarray:
    dtype = _numpy_dtype(t.dtype, name, path)
    flat = np.frombuffer(raw, dtype.newbyteorder(">") if big_endian else dtype)
    if t.size and 0 in t.size:
        return np.empty(t.size, dtype)
    end = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride)) + 1
    if t.offset < 0 or min(t.stride, default=0) < 0 or end > flat.size:
        raise ForeignCheckpointError(
            f"{path}: tensor {name!r} (offset {t.offset}, size {t.size}, stride {t.stride}) lies outside "
            f"its storage {t.storage.key!r} of {flat.size} elements; the file is damaged"
        )
    view = np.lib.stride_tricks.as_strided(
        flat[t.offset :], t.size, [s * dtype.itemsize for s in t.stride], writeable=False
    )
    return np.array(view, dtype=dtype)  # a contiguous, native-endian, writable copy


def read_torch_tensors(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor in a torch.save / torch.jit.save zip file, as ``{"a.b.weight": array}``.

    Names are dotted paths through dicts, lists and module attributes, so a state dict keeps its
    keys and a TorchScript module yields its state_dict names (plus any other tensor attributes).
    """
    path = Path(path)
    zf, top = _open_archive(path)
    with zf:
        obj = _Unpickler(zf.open(f"{top}/data.pkl"), str(path)).load()
        names = set(zf.namelist())
        big_endian = f"{top}/byteorder" in names and zf.read(f"{top}/byteorder").strip() == b"big"
        found: dict[str, _Tensor] = {}
        _walk(obj, "", found, set())
        cache: dict[str, bytes] = {}
        out = {}
        for name, t in found.items():
            entry = f"{top}/data/{t.storage.key}"
            if entry not in names:
                raise ForeignCheckpointError(f"{path}: tensor {name!r} needs {entry}, which the archive lacks")
            if entry not in cache:  # storages shared by several views are read once
                cache[entry] = zf.read(entry)
            out[name or "tensor"] = _materialize(t, name, cache[entry], big_endian, path)
    return out


def conv_kernel(w: np.ndarray) -> np.ndarray:
    """torch Conv1d/2d/3d weight (O, I/groups, *k) -> ``nnx.Conv`` kernel (*k, I/groups, O)."""
    w = np.asarray(w)
    if w.ndim not in (3, 4, 5):
        raise ValueError(f"conv_kernel: expected a (O, I, *k) weight of 3 to 5 dims, got shape {w.shape}")
    return np.ascontiguousarray(w.transpose(*range(2, w.ndim), 1, 0))


def linear_kernel(w: np.ndarray) -> np.ndarray:
    """torch Linear weight (out, in) -> ``nnx.Linear`` kernel (in, out)."""
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"linear_kernel: expected an (out, in) weight, got shape {w.shape}")
    return np.ascontiguousarray(w.T)


def conv_transpose_kernel(w: np.ndarray) -> np.ndarray:
    """torch ConvTranspose1d/2d/3d weight (I, O, *k) -> ``nnx.ConvTranspose`` kernel (*k, I, O).

    For ``transpose_kernel=False`` (the default): torch's transposed conv correlates the
    stride-dilated input with the spatially flipped kernel, so the kernel is flipped here. Give the
    layer torch's geometry as explicit padding, per spatial dim
    ``(d*(k-1) - p, d*(k-1) - p + output_padding)``, with ``strides=stride`` and
    ``kernel_dilation=d``. Grouped transposed convs have no ``nnx.ConvTranspose`` equivalent.
    """
    w = np.asarray(w)
    if w.ndim not in (3, 4, 5):
        raise ValueError(f"conv_transpose_kernel: expected an (I, O, *k) weight of 3 to 5 dims, got {w.shape}")
    spatial = tuple(range(2, w.ndim))
    return np.ascontiguousarray(np.flip(w, spatial).transpose(*spatial, 0, 1))


def _flax_path(path: tuple) -> str:
    return "/".join(str(p) for p in path)


def assign(
    state: nnx.State,
    tensors: Mapping[str, np.ndarray],
    mapping: Mapping[str, tuple[str, Converter | None]],
) -> nnx.State:
    """A copy of ``state`` with the leaves named in ``mapping`` taken from torch ``tensors``.

    ``mapping`` is ``{"encoder/conv1/kernel": ("encoder.conv1.weight", conv_kernel), ...}``; a
    ``None`` converter takes the array as is. Values are cast to each leaf's dtype (and placed on
    its sharding); unmapped leaves are kept. All missing names and shape mismatches are reported in
    one ForeignCheckpointError.
    """
    flat = {_flax_path(p): leaf for p, leaf in state.flat_state()}
    problems, new = [], {}
    for flax_path, (torch_name, convert) in mapping.items():
        if flax_path not in flat:
            near = difflib.get_close_matches(flax_path, flat, n=3)
            hint = f" (close: {near})" if near else ""
            problems.append(f"flax path {flax_path!r} is not in the state{hint}")
        if torch_name not in tensors:
            near = difflib.get_close_matches(torch_name, tensors, n=3)
            hint = f"; did you mean {near}?" if near else ""
            problems.append(f"torch tensor {torch_name!r} (for {flax_path!r}) is missing{hint}")
        if flax_path not in flat or torch_name not in tensors:
            continue
        leaf = flat[flax_path]
        target = leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf
        try:
            value = np.asarray(convert(tensors[torch_name]) if convert else tensors[torch_name])
        except Exception as e:  # a converter given the wrong kind of tensor
            problems.append(f"{flax_path!r} <- {torch_name!r}: converter failed: {e}")
            continue
        if tuple(value.shape) != tuple(target.shape):
            problems.append(
                f"{flax_path!r} <- {torch_name!r}: shape {tuple(value.shape)} after conversion "
                f"(torch {tuple(np.shape(tensors[torch_name]))}), state wants {tuple(target.shape)}"
            )
            continue
        value = value.astype(target.dtype)
        sharding = getattr(target, "sharding", None)
        value = jax.device_put(value, sharding) if sharding is not None else jax.numpy.asarray(value)
        new[flax_path] = leaf.replace(value) if isinstance(leaf, nnx.Variable) else value
    if problems:
        raise ForeignCheckpointError(
            f"cannot assign {len(mapping)} torch tensors, {len(problems)} problem(s); fix the mapping:\n  "
            + "\n  ".join(problems)
        )
    return nnx.State.from_flat_path([(p, new.get(_flax_path(p), leaf)) for p, leaf in state.flat_state()])


def unused(tensors: Mapping[str, np.ndarray], mapping: Mapping[str, tuple[str, Converter | None]]) -> list[str]:
    """Names of torch tensors no mapping entry consumes, in file order."""
    used = {name for name, _ in mapping.values()}
    return [name for name in tensors if name not in used]
