"""Loading, overriding, freezing and recording experiment configs.

A config is `configs/<name>.py:get_config(arg) -> ml_collections.ConfigDict`. The arg selects a
preset (`tiny` for CPU/CI, `full` for the paper's sizes). Overrides use the absl form
`--config.a.b=value`. Before anything is jitted the config is frozen into a hashable
`FrozenConfigDict` so that it can be a static argument without retracing surprises.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import ml_collections

# Settings that change how a run is executed, how long or how often it reports, but not what a
# step computes; they are left out of the fingerprint, so resuming on another mesh, with more
# data workers, for more steps, or evaluating another checkpoint raises no warning.
EXECUTION_ONLY_SECTIONS = ("runtime", "checkpoint", "logging", "data", "eval")
EXECUTION_ONLY_KEYS = (("train", "num_steps"), ("train", "log_every"), ("train", "eval_every"))

_CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"

# What the shared training loop needs of the sections every stage has: (section, key, holds, what
# it must be). Checked once, when a config is loaded; the runtime reads these values as they are.
RUNTIME_RULES = (
    ("train", "num_steps", lambda v: v >= 0, "an integer >= 0"),
    ("train", "global_batch_size", lambda v: v >= 1, "an integer >= 1"),
    ("train", "log_every", lambda v: v >= 1, "an integer >= 1"),
    ("train", "eval_every", lambda v: v >= 0, "an integer >= 0 (0: evaluate the final state only)"),
    ("checkpoint", "every_steps", lambda v: v >= 1, "an integer >= 1"),
    ("checkpoint", "max_to_keep", lambda v: v >= 1, "an integer >= 1"),
    ("checkpoint", "keep_period", lambda v: v >= 0, "an integer >= 0 (0: off)"),
    ("checkpoint", "best_mode", lambda v: v in ("max", "min"), "'max' or 'min'"),
)


class ConfigError(ValueError):
    """A config file, preset or override is invalid; the message says how to fix it."""


def resolve_config_path(path: str) -> Path:
    """Finds a config file given as a path, or as a name under the project's `configs/`."""
    candidates = [Path(path)]
    if not Path(path).is_absolute():
        candidates.append(_CONFIGS_DIR / Path(path).name)
        candidates.append(_CONFIGS_DIR / f"{Path(path).name}.py")
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    available = sorted(p.stem for p in _CONFIGS_DIR.glob("*.py") if not p.stem.startswith("_"))
    raise ConfigError(
        f"config file {path!r} not found. Pass a path such as configs/smoke.py:tiny; "
        f"configs shipped with macl-jax: {', '.join(available)}"
    )


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Loads `path.py[:arg]`, applies `key=value` overrides and returns a locked ConfigDict."""
    path_str, _, arg = spec.partition(":")
    path = resolve_config_path(path_str)
    module_name = f"_macl_config_{path.stem}_{abs(hash(str(path)))}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"cannot import config file {path}")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: report where it failed
        raise ConfigError(f"config file {path} failed to import: {exc!r}") from exc
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path} defines no get_config(arg) function")
    try:
        config = module.get_config(arg) if arg else module.get_config(None)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"{path}:{arg or '<default>'}: {exc}") from exc
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"{path}: get_config must return an ml_collections.ConfigDict")
    config.lock()
    apply_overrides(config, overrides, source=spec)
    check_runtime_settings(config, source=spec)
    return config


def check_runtime_settings(config: ml_collections.ConfigDict, *, source: str = "config") -> None:
    """Raises ConfigError naming the key when a runtime setting (`RUNTIME_RULES`) is out of range."""
    for section, key, holds, requirement in RUNTIME_RULES:
        if section in config and key in config[section] and not holds(config[section][key]):
            raise ConfigError(
                f"{source}: config.{section}.{key}={config[section][key]!r} must be {requirement}; "
                f"set --config.{section}.{key}=..."
            )


def _parse_value(text: str, current: Any) -> Any:
    if isinstance(current, bool):
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"expected a boolean (true/false), got {text!r}")
    if isinstance(current, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    return value


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Iterable[str], *, source: str = "config"
) -> None:
    """Applies `a.b.c=value` strings in place; unknown keys and wrong types raise ConfigError."""
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip().removeprefix("--").removeprefix("config.")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form --config.key=value")
        parts = key.split(".")
        node = config
        for depth, part in enumerate(parts):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                prefix = ".".join(parts[:depth])
                valid = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
                close = difflib.get_close_matches(part, valid, n=3)
                hint = f" Did you mean {', '.join(repr('.'.join(parts[:depth] + [c])) for c in close)}?" if close else ""
                raise ConfigError(
                    f"unknown config key {key!r} in {source}: "
                    f"{'the config' if not prefix else repr(prefix)} has no field {part!r}.{hint} "
                    f"Valid fields there: {', '.join(valid) or '(none)'}."
                )
            if depth < len(parts) - 1:
                node = node[part]
        leaf = parts[-1]
        current = node[leaf]
        if isinstance(current, ml_collections.ConfigDict):
            raise ConfigError(f"{key!r} in {source} is a section; override one of its fields instead")
        value = _parse_value(text, current)
        try:
            node[leaf] = value
        except (TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(
                f"cannot set {key}={text!r} in {source}: {exc}. The current value is {current!r} "
                f"({type(current).__name__})."
            ) from exc


def freeze(config: ml_collections.ConfigDict) -> ml_collections.FrozenConfigDict:
    """Immutable, hashable view: safe as a static argument of jitted functions."""
    if isinstance(config, ml_collections.FrozenConfigDict):
        return config
    return ml_collections.FrozenConfigDict(config)


def to_dict(config: ml_collections.ConfigDict | ml_collections.FrozenConfigDict) -> dict:
    """Plain JSON-able dict (tuples become lists)."""
    return json.loads(config.to_json_best_effort(sort_keys=True))


def fingerprint(config: ml_collections.ConfigDict | ml_collections.FrozenConfigDict) -> str:
    """Hash of what the run computes: equal fingerprints mean a checkpoint is compatible."""
    content = {k: v for k, v in to_dict(config).items() if k not in EXECUTION_ONLY_SECTIONS}
    for section, key in EXECUTION_ONLY_KEYS:
        if isinstance(content.get(section), dict):
            content[section].pop(key, None)
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def write_json_atomic(path: str | os.PathLike, payload: Any) -> None:
    """Writes JSON through a temporary file and a rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def write_resolved_config(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> Path:
    """Records the resolved config (after presets and overrides) as `<workdir>/config.json`.

    A different config already recorded there (an earlier run with other overrides) is kept as
    `config-<UTC time>.json` rather than overwritten.
    """
    path = Path(workdir) / "config.json"
    payload = to_dict(config)
    if path.exists():
        try:
            previous = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            previous = None
        if previous != payload:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            os.replace(path, path.with_name(f"config-{stamp}.json"))
    write_json_atomic(path, payload)
    return path


def recorded_config(
    workdir: str | os.PathLike, checkpoint: str = "best", sections: Sequence[str] | None = None, stage: str | None = None
) -> ml_collections.ConfigDict:
    """The config a training run recorded (`<workdir>/config.json`: its stage and preset, with the
    recorded `sections` over them; default: every section but `runtime`, which belongs to the
    process reading it), set to restore `checkpoint`: "best" (the run's selected state, falling
    back to the newest when the run kept none), "final" or a step number. With `stage`, a run of
    another stage is refused."""
    path = Path(workdir) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{path} not found: pass the workdir of a training run (it writes config.json when it starts)")
    try:
        recorded = json.loads(path.read_text())
        config = load_config(f"configs/{recorded['stage']}.py:{recorded['preset']}")
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise ConfigError(f"{path} is not a readable run config ({exc}); pass the workdir of a training run") from exc
    if stage is not None and config.stage != stage:
        raise ConfigError(f"{workdir} is a {config.stage!r} run; pass the workdir of a `{stage}` run")
    if sections is None:
        sections = [k for k, v in recorded.items() if isinstance(v, dict) and k != "runtime"]
    for section in sections:
        for key, value in recorded.get(section, {}).items():
            if section in config and key in config[section]:
                current = config[section][key]
                config[section][key] = tuple(value) if isinstance(current, tuple) and isinstance(value, list) else value
    # The recorded config may come from an `eval` of another checkpoint: choose afresh.
    config.eval.checkpoint_dir, config.eval.checkpoint_step = "", -1
    best = Path(workdir) / "best"
    if checkpoint == "best":
        if best.is_dir() and any(p.name.isdigit() for p in best.iterdir()):
            config.eval.checkpoint_dir = str(best)
    elif checkpoint != "final":
        config.eval.checkpoint_step = int(checkpoint)
    return config
