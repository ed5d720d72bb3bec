"""Stage-1 and stage-2 BLIP-2 pre-training on PaddleNLP's Trainer and Paddle fleet (``blip2-train``).

The names below load on first use, so that ``blip2-train`` can set up the process (threads, quiet imports)
before paddle is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from blip2_core.lazy_names import lazy_getattr

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


__getattr__ = lazy_getattr(__name__, _LAZY)
