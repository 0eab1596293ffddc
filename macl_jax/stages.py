"""The registry of stages the entry point can run.

Implementations are `module:function`, imported only when selected so that, e.g., `generate`
does not pay for the training code. A stage function takes `(config, workdir)` and returns a
JSON-able summary. Training stages run with their own configs (`config.stage` names them);
stages such as `eval` run with the config of the training stage they act on.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class Stage:
    implementation: str
    default_config: str | None
    # True: takes the config of any training stage (e.g. eval); False: only its own configs.
    acts_on_other_stages: bool = False


STAGES: dict[str, Stage] = {
    "smoke": Stage("macl_jax.train.smoke:run", "configs/smoke.py:tiny"),
    "eval": Stage("macl_jax.evaluate:run", None, acts_on_other_stages=True),
    "sfe": Stage("macl_jax.train.sfe:run", "configs/sfe.py:tiny"),
    "mdn": Stage("macl_jax.train.mdn:run", "configs/mdn.py:tiny"),
    "renderer": Stage("macl_jax.train.renderer:run", "configs/renderer.py:tiny"),
    "rhm": Stage("macl_jax.train.rhm:run", "configs/rhm.py:tiny"),
    "pipeline": Stage("macl_jax.pipeline:run", "configs/pipeline.py:default"),
}


def available() -> list[str]:
    return sorted(STAGES)


def _lookup(name: str) -> Stage:
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; available stages: {', '.join(available())}")
    return STAGES[name]


def get_stage(name: str) -> Callable[[Any, Any], dict]:
    module_name, _, func = _lookup(name).implementation.partition(":")
    return getattr(importlib.import_module(module_name), func)


def default_config(name: str) -> str:
    stage = _lookup(name)
    if stage.default_config is None:
        raise KeyError(f"stage {name!r} needs --config: the config of the run it acts on")
    return stage.default_config


def check_config_stage(name: str, config_stage: str) -> None:
    """Raises KeyError when the config is for another stage and `name` cannot act on it."""
    stage = _lookup(name)
    if name == config_stage:
        return
    if stage.acts_on_other_stages:
        _lookup(config_stage)
        return
    raise KeyError(f"stage {name!r} does not match the config (its stage is {config_stage!r})")
