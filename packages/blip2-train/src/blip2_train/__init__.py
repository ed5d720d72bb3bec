"""Stage-1 and stage-2 BLIP-2 pre-training on PaddleNLP's Trainer and Paddle fleet (``blip2-train``)."""

from .optimizer import ParameterGroups, build_adamw, parameter_groups
from .schedule import WarmupCosineSchedule, warmup_cosine_lr

__all__ = ["ParameterGroups", "WarmupCosineSchedule", "build_adamw", "parameter_groups", "warmup_cosine_lr"]
