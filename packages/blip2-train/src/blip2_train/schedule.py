"""Learning-rate schedule: linear warmup, then a cosine down to ``eta_min``, stepped once per optimizer step.

LAVIS (``linear_warmup_cosine_lr``) warms up from ``warmup_start_lr`` during the first epoch and then steps its
cosine once per epoch; here the cosine moves every step over the steps after warmup, which is the same curve
sampled finely (and PaddleMIX's ``cos(pi * step // total)`` was a 4-level staircase, not a cosine).
"""

from __future__ import annotations

import math

from paddle.optimizer.lr import LRScheduler


def warmup_cosine_lr(
    step: int, peak_lr: float, eta_min: float, warmup_steps: int, total_steps: int, warmup_start_lr: float = 0.0
) -> float:
    """The learning rate for optimizer step ``step`` (0-based)."""
    if step < warmup_steps:
        return warmup_start_lr + (peak_lr - warmup_start_lr) * step / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    return eta_min + 0.5 * (peak_lr - eta_min) * (1.0 + math.cos(math.pi * progress))


class WarmupCosineSchedule(LRScheduler):
    """paddle scheduler for ``warmup_cosine_lr``; its state (``last_epoch``) is saved with each checkpoint."""

    def __init__(
        self,
        peak_lr: float,
        eta_min: float,
        warmup_steps: int,
        total_steps: int,
        warmup_start_lr: float = 0.0,
    ) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.peak_lr, self.eta_min = peak_lr, eta_min
        self.warmup_steps, self.total_steps, self.warmup_start_lr = warmup_steps, total_steps, warmup_start_lr
        super().__init__(learning_rate=peak_lr)

    def get_lr(self) -> float:
        return warmup_cosine_lr(
            self.last_epoch, self.peak_lr, self.eta_min, self.warmup_steps, self.total_steps, self.warmup_start_lr
        )

    def set_state_dict(self, state_dict: dict) -> None:
        """The step from the checkpoint, the rate from this run's schedule: paddle restores the saved rate too,
        so a resume with a lower ``--learning_rate`` (after a non-finite loss) would make its first update at the
        old rate. With unchanged arguments the two are the same number."""
        super().set_state_dict(state_dict)
        self.last_lr = self.get_lr()
