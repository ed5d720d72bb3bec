"""Stage-1 and stage-2 BLIP-2 pre-training on PaddleNLP's Trainer and Paddle fleet (``blip2-train``).

The names below load on first use, so that ``blip2-train`` can set up the process (threads, quiet imports)
before paddle is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ParameterGroups", "WarmupCosineSchedule", "build_adamw", "parameter_groups", "warmup_cosine_lr"]

_LAZY = {
    "ParameterGroups": ".optimizer",
    "build_adamw": ".optimizer",
    "parameter_groups": ".optimizer",
    "WarmupCosineSchedule": ".schedule",
    "warmup_cosine_lr": ".schedule",
}

if TYPE_CHECKING:
    from .optimizer import ParameterGroups, build_adamw, parameter_groups
    from .schedule import WarmupCosineSchedule, warmup_cosine_lr


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
