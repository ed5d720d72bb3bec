"""Config dataclasses built from their own keys."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

ConfigT = TypeVar("ConfigT")


def config_from_dict(cls: type[ConfigT], values: dict[str, Any]) -> ConfigT:
    """``cls(**values)``; unknown keys are an error, so that a typo is not silently dropped."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {unknown} (known: {sorted(names)})")
    return cls(**values)
