"""Allowed values of SynthTalk's frozen specs, declared beside each field and checked on construction.

    @dataclasses.dataclass(frozen=True)
    class Voice:
        f0_mean: float = checked(in_range(30.0, 600.0, "Hz"), default=120.0)

        def __post_init__(self):
            check_fields(self)

A spec that breaks a rule raises a ValueError naming the class, the field, its value and the rule,
so a bad variant or a hand-made voice fails where it is built, not deep inside a render.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

_RULE = "rule"


@dataclasses.dataclass(frozen=True)
class Rule:
    holds: Callable[[Any], bool]
    text: str  # completes "<Class>.<field>=<value> ...", e.g. "must be in [0, 1]"


def in_range(low: float, high: float, unit: str = "", shape: tuple[int, ...] = ()) -> Rule:
    """Every value in [low, high]; `shape` () for a number, e.g. (3,) for an RGB colour."""

    def holds(value: Any) -> bool:
        try:
            array = np.asarray(value, np.float64)
        except (TypeError, ValueError):
            return False
        return array.shape == shape and bool(np.all((array >= low) & (array <= high)))

    values = f"of shape {shape} with values " if shape else ""
    return Rule(holds, f"must be {values}in [{low:g}, {high:g}]" + (f" {unit}" if unit else ""))


def one_of(options: Sequence[Any]) -> Rule:
    return Rule(lambda value: value in options, f"must be one of {tuple(options)}")


def checked(rule: Rule, default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field that `check_fields` tests against `rule`."""
    return dataclasses.field(default=default, metadata={_RULE: rule})


def check_fields(spec: Any) -> None:
    """Raises a ValueError for the first field of the dataclass `spec` that breaks its rule."""
    for field in dataclasses.fields(spec):
        rule = field.metadata.get(_RULE)
        value = getattr(spec, field.name)
        if rule is not None and not rule.holds(value):
            raise ValueError(f"{type(spec).__name__}.{field.name}={value!r} {rule.text}")
