"""Loading a checkpoint of any layout (see ``formats``) into a ``QFormer`` or ``QFormerForPretraining``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import paddle

from .formats import convert_state_dict
from .model import QFormer
from .pretraining import QFormerForPretraining

logger = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """What a load did not use (``unexpected``) and what it did not find (``missing``)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_pretrained(
    model: QFormer | QFormerForPretraining, state_dict: dict[str, Any], layout: str | None = None
) -> LoadReport:
    """Load a checkpoint of any layout into a ``QFormer`` or a ``QFormerForPretraining``.

    Keys that are not the model's are reported as ``unexpected`` (for a bare ``QFormer``, the stage-1
    heads among them); a shape mismatch is an error naming the key and both shapes.
    """
    converted = convert_state_dict(state_dict, layout)
    report = LoadReport()
    if isinstance(model, QFormer):
        report.unexpected = [k for k in converted if not k.startswith("qformer.")]
        converted = {k[len("qformer.") :]: v for k, v in converted.items() if k.startswith("qformer.")}
    params = model.state_dict()
    for key, value in converted.items():
        if key not in params:
            report.unexpected.append(key)
            continue
        target = params[key]
        if value.size == 1 and int(np.prod(target.shape)) == 1:
            value = value.reshape(target.shape)  # a scalar (temp) saved as [] or [1]
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(
                f"shape mismatch for {key}: checkpoint {tuple(value.shape)} vs model {tuple(target.shape)}"
            )
        target.set_value(paddle.to_tensor(value.astype(np.float32)).astype(target.dtype))
    report.missing = sorted(set(params) - set(converted))
    if report.missing:
        logger.info("not in the checkpoint, left at initialisation: %s", report.missing)
    return report
