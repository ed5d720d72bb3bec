"""What the demo's two pre-training loops (``pretrain_lm.py``, ``pretrain_vit.py``) share: AdamW under a linear
warmup (a twentieth of the steps) and a cosine down to ``floor`` times the rate, and one optimiser step."""

from __future__ import annotations

import math
from typing import Any


def adamw_warmup_cosine(
    parameters: list, learning_rate: float, steps: int, weight_decay: float, floor: float
) -> tuple[Any, Any]:
    """(optimizer, schedule); call ``optimise`` once per step."""
    import paddle

    warmup = max(1, steps // 20)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup)))

    schedule = paddle.optimizer.lr.LambdaDecay(learning_rate, factor)
    return paddle.optimizer.AdamW(schedule, parameters=parameters, weight_decay=weight_decay), schedule


def optimise(loss: Any, optimizer: Any, schedule: Any) -> float:
    """Backward, step, clear the gradients, advance the schedule; the loss as a float."""
    loss.backward()
    optimizer.step()
    optimizer.clear_grad()
    schedule.step()
    return float(loss)
