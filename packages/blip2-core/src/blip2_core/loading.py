"""Putting converted weights into a model, with a report of what did not fit."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import paddle
from paddle import nn

logger = logging.getLogger(__name__)


@dataclass
class LoadReport:
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def log(self, source: str) -> None:
        if self.missing:
            logger.warning(
                "%s: %d weights not in the checkpoint, left as initialised: %s",
                source,
                len(self.missing),
                _head(self.missing),
            )
        if self.unexpected:
            logger.warning("%s: %d checkpoint weights unused: %s", source, len(self.unexpected), _head(self.unexpected))


def _head(names: list[str], count: int = 8) -> str:
    return ", ".join(names[:count]) + (f" ... (+{len(names) - count})" if len(names) > count else "")


def load_converted(model: nn.Layer, converted: dict[str, np.ndarray], source: str = "checkpoint") -> LoadReport:
    """Set every parameter found in ``converted`` (our names); a shape mismatch is an error naming both shapes."""
    params = model.state_dict()
    report = LoadReport()
    loaded = set()
    for key, value in converted.items():
        target = params.get(key)
        if target is None:
            report.unexpected.append(key)
            continue
        if value.size == 1 and int(np.prod(target.shape)) == 1:
            value = value.reshape(target.shape)
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(
                f"{source}: shape mismatch for {key}: checkpoint {tuple(value.shape)} vs model {tuple(target.shape)}"
            )
        target.set_value(paddle.to_tensor(np.asarray(value, dtype=np.float32)).astype(target.dtype))
        loaded.add(key)
    report.missing = sorted(set(params) - loaded)
    return report
