"""Module attributes resolved on first access, so that importing a module does not import what its names need."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_module_getattr(module: str, sources: Mapping[str, str]) -> Callable[[str], Any]:
    """A ``__getattr__`` for ``module``: ``sources`` maps each name to the module defining it (``.x`` is relative
    to ``module``'s package). The value found is stored on ``module``, so each name is looked up once."""
    package = sys.modules[module].__package__  # what ".x" is relative to, for a package and a plain module alike

    def __getattr__(name: str) -> Any:
        if name not in sources:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(sources[name], package), name)
        setattr(sys.modules[module], name, value)
        return value

    return __getattr__
