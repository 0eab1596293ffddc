"""The registry of stages the entry point can run.

Each entry is `module:function`, imported only when selected so that, e.g., `generate` does not
pay for the training code. A stage function takes `(config, workdir)` and returns a JSON-able
summary.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

STAGES: dict[str, tuple[str, str]] = {
    # name: (implementation, default config)
    "smoke": ("macl_jax.train.smoke:run", "configs/smoke.py:tiny"),
}


def available() -> list[str]:
    return sorted(STAGES)


def get_stage(name: str) -> Callable[[Any, Any], dict]:
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; available stages: {', '.join(available())}")
    module_name, _, func = STAGES[name][0].partition(":")
    return getattr(importlib.import_module(module_name), func)


def default_config(name: str) -> str:
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; available stages: {', '.join(available())}")
    return STAGES[name][1]
