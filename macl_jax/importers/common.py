"""What every importer shares: reading an authors' checkpoint, checking it, writing the run.

An importer (`Importer`) names the stage it fills, its default config, the overrides the weights
need to compute what they computed in PyTorch, the container key of its checkpoint format and a
`fill` function that moves the tensors into a fresh train state. `import_run` does the rest and
writes nothing until the whole checkpoint has been read and mapped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import numpy as np
from flax import nnx

from macl_jax.checkpoint import CheckpointManager
from macl_jax.checkpoint.foreign import ForeignCheckpointError, assign, conv_kernel, linear_kernel, read_torch_tensors
from macl_jax.config import ConfigError, fingerprint, freeze, load_config, write_json_atomic, write_resolved_config
from macl_jax.train.state import TrainState, split_model

Tensors = Mapping[str, np.ndarray]


class CheckpointImportError(ForeignCheckpointError):
    """A checkpoint that is not the model asked for, or a run directory that cannot be written."""


@dataclasses.dataclass(frozen=True)
class Importer:
    """One source model.

    `container`: the key under which the authors' script saved the state dict (e.g. "state_dict").
    `signature`: a tensor name (after the container and any `module.` prefix are removed) that
    only this model's state dict has; it tells a wrong model apart.
    `fill(config, task, state, tensors) -> (state, used tensor names)`.
    """

    name: str
    stage: str
    default_config: str
    required: tuple[str, ...]
    container: str
    signature: str
    build_task: Callable[[Any], Any]
    fill: Callable[[Any, Any, TrainState, Tensors], tuple[TrainState, set[str]]]
    description: str


def state_dict_of(path: Path, importer: Importer, others: Mapping[str, Importer]) -> Tensors:
    """The model tensors of `path` as `importer`'s authors saved them, keys as in `nn.Module.state_dict()`.

    The container key is removed, and so is DataParallel's `module.` prefix. A checkpoint whose
    tensors belong to another known model is refused with the `--from` it needs.
    """
    everything = read_torch_tensors(path)
    prefix = f"{importer.container}."
    tensors = {_strip_parallel(k[len(prefix):]): v for k, v in everything.items() if k.startswith(prefix)}
    if importer.signature in tensors:
        return tensors
    for other in others.values():
        inner = {_strip_parallel(k[len(other.container) + 1:]) for k in everything if k.startswith(other.container + ".")}
        if other.name != importer.name and other.signature in inner:
            raise CheckpointImportError(
                f"{path}: this is a {other.description} checkpoint, not a {importer.description} one; "
                f"import it with --from {other.name}"
            )
    containers = sorted({k.split(".", 1)[0] for k in everything})
    raise CheckpointImportError(
        f"{path}: not a {importer.description} checkpoint: expected the state dict under {importer.container!r} "
        f"with a tensor {importer.signature!r}, found top-level keys {containers[:8]}. Give the file the authors' "
        f"script saved ({importer.container!r} holding the model's state_dict()), or choose another --from"
    )


def _strip_parallel(name: str) -> str:
    return name[len("module."):] if name.startswith("module.") else name


def assign_module(
    graphdef: nnx.GraphDef, params: Any, model_state: Any, tensors: Tensors, mapping: Mapping[str, tuple[str, Any]]
) -> tuple[Any, Any]:
    """(params, other variables) of one model with the leaves in `mapping` taken from `tensors`."""
    module = nnx.merge(graphdef, params, model_state)
    nnx.update(module, assign(nnx.state(module), tensors, mapping))
    _, params, rest = split_model(module)
    return params, rest


def import_config(importer: Importer, spec: str | None, overrides: list[str]):
    """The run's config: `spec` (default: the importer's) with the user's and the required overrides."""
    keys = {o.partition("=")[0] for o in overrides}
    clash = [r for r in importer.required if r.partition("=")[0] in keys and r not in overrides]
    if clash:
        raise ConfigError(
            f"--from {importer.name} needs {', '.join(clash)} to compute what the weights computed; "
            "remove the conflicting --config override"
        )
    config = load_config(spec or importer.default_config, [*overrides, *importer.required])
    if config.stage != importer.stage:
        raise ConfigError(f"--from {importer.name} fills a {importer.stage!r} run, but the config is for {config.stage!r}")
    return config


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _refuse_existing(workdir: Path) -> None:
    taken = [p.name for p in (workdir / "config.json", workdir / "checkpoints", workdir / "best") if p.exists()]
    if taken:
        raise CheckpointImportError(
            f"--workdir {workdir} already holds a run ({', '.join(taken)}); importing would mix two runs. "
            "Choose an empty or new directory"
        )


def import_run(importer: Importer, others: Mapping[str, Importer], checkpoint: str | os.PathLike, workdir: str | os.PathLike,
               config_spec: str | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Reads `checkpoint`, maps it onto a fresh `importer.stage` state and writes the run to `workdir`.

    Everything that can fail on the input (format, model, shapes, config) fails before anything is
    written; an existing run in `workdir` is refused, and a failed save removes what it created.
    """
    checkpoint, workdir = Path(checkpoint), Path(workdir).absolute()
    if not checkpoint.is_file():
        raise CheckpointImportError(f"{checkpoint}: no such file; give the .pth/.pt file the authors' script saved")
    config = import_config(importer, config_spec, list(overrides or []))
    _refuse_existing(workdir)
    tensors = state_dict_of(checkpoint, importer, others)
    frozen = freeze(config)
    task = importer.build_task(frozen)
    with jax.default_device(jax.devices()[0]):
        state = jax.jit(task.init)(jax.random.key(config.seed))
        state, used = importer.fill(frozen, task, state, tensors)
    ignored = [name for name in tensors if name not in used]

    digest = _sha256(checkpoint)
    created = not workdir.exists()
    workdir.mkdir(parents=True, exist_ok=True)
    manager = CheckpointManager(workdir / "checkpoints", async_save=False, fingerprint=fingerprint(config))
    try:
        manager.save(0, state, metadata={"imported_from": str(checkpoint.resolve()), "sha256": digest}, force=True)
        manager.wait_until_finished()
    except BaseException:
        manager.close()
        shutil.rmtree(workdir if created else workdir / "checkpoints", ignore_errors=True)
        raise
    manager.close()
    write_resolved_config(config, workdir)
    summary = {
        "from": importer.name, "checkpoint": str(checkpoint.resolve()), "sha256": digest, "stage": importer.stage,
        "workdir": str(workdir), "step": 0, "tensors_imported": len(used), "tensors_ignored": ignored,
    }
    write_json_atomic(workdir / "import_summary.json", summary)
    return summary


# --------------------------------------------------------------------------- mapping helpers

NameMap = dict[str, tuple[str, Any]]
# flax path -> (torch names, function of those tensors): a leaf that several torch tensors make up
# (e.g. a Bi-GRU's two directions, kept in one leaf here).
Combined = dict[str, tuple[tuple[str, ...], Callable[..., np.ndarray]]]


def conv_entries(flax: str, torch: str, bias: bool = True) -> NameMap:
    mapping = {f"{flax}/kernel": (f"{torch}.weight", conv_kernel)}
    if bias:
        mapping[f"{flax}/bias"] = (f"{torch}.bias", None)
    return mapping


def linear_entries(flax: str, torch: str) -> NameMap:
    return {f"{flax}/kernel": (f"{torch}.weight", linear_kernel), f"{flax}/bias": (f"{torch}.bias", None)}


def batch_norm_entries(flax: str, torch: str) -> NameMap:
    return {f"{flax}/scale": (f"{torch}.weight", None), f"{flax}/bias": (f"{torch}.bias", None),
            f"{flax}/mean": (f"{torch}.running_mean", None), f"{flax}/var": (f"{torch}.running_var", None)}


def with_combined(tensors: Tensors, mapping: NameMap, combined: Combined) -> tuple[dict, NameMap, set[str]]:
    """(tensors, mapping, torch names read) with each combined leaf built under a joined name.

    A combined leaf whose sources are missing is mapped to its first missing name, so `assign`
    reports it with the other missing tensors.
    """
    tensors, mapping = dict(tensors), dict(mapping)
    used = {name for name, _ in mapping.values()}
    for flax, (names, combine) in combined.items():
        missing = [n for n in names if n not in tensors]
        if missing:
            mapping[flax] = (missing[0], None)
            continue
        key = "+".join(names)
        tensors[key] = combine(*(tensors[n] for n in names))
        mapping[flax] = (key, None)
        used |= set(names)
    return tensors, mapping, used


def fill_model(task: Any, state: TrainState, tensors: Tensors, mapping: NameMap, combined: Combined | None = None,
               name: str | None = None) -> tuple[TrainState, set[str]]:
    """`state` with one model's leaves from `tensors`: a `SupervisedTask`'s model, or the model
    `name` of a task holding several (`task.graphdef_of(name)`, state dicts keyed by name). Returns
    the torch names used, counting the `num_batches_tracked` of every imported batch norm (PyTorch
    reads it only when the momentum is None, which no model here uses)."""
    tensors, mapping, used = with_combined(tensors, mapping, combined or {})
    if name is None:
        params, rest = assign_module(task.graphdef, state.params, state.model_state, tensors, mapping)
    else:
        params, rest = dict(state.params), dict(state.model_state)
        params[name], rest[name] = assign_module(task.graphdef_of(name), params[name], rest[name], tensors, mapping)
    used |= {n[: -len("running_mean")] + "num_batches_tracked" for n in used if n.endswith("running_mean")} & set(tensors)
    return state.replace(params=params, model_state=rest), used


def check_sizes(model: Any, found: Mapping[str, Any], what: str, released: str) -> None:
    """Refuses a checkpoint whose sizes (read off its tensors) differ from `config.model`'s,
    naming the overrides that fit it."""
    wrong = {k: v for k, v in found.items() if tuple(np.atleast_1d(model[k])) != tuple(np.atleast_1d(v))}
    if not wrong:
        return

    def flag(k: str, v: Any) -> str:
        return f"--config.model.{k}=" + ("(" + ",".join(map(str, v)) + ")" if isinstance(v, tuple) else str(v))

    raise CheckpointImportError(
        f"the checkpoint's {what} has other sizes than the config: "
        + "; ".join(f"{k} {v} (config {tuple(model[k]) if isinstance(v, tuple) else model[k]})" for k, v in wrong.items())
        + f". The authors' released sizes are {released}'s; otherwise import it with " + " ".join(flag(k, v) for k, v in wrong.items())
    )


__all__ = [
    "CheckpointImportError", "Combined", "Importer", "NameMap", "assign_module", "batch_norm_entries", "check_sizes",
    "conv_entries", "fill_model", "import_run", "linear_entries", "state_dict_of", "with_combined",
]
