"""Loading a vision-encoder checkpoint of any layout (see ``formats``) into an ``EvaVisionTransformer``."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import paddle

from .formats import convert_state_dict
from .model import EvaVisionTransformer, resize_position_embedding

logger = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """What a load did not use (``unexpected``) and what it did not find (``missing``)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _block_index(key: str) -> int | None:
    m = re.match(r"^blocks\.(\d+)\.", key)
    return int(m.group(1)) if m else None


def load_pretrained(model: EvaVisionTransformer, state_dict: dict[str, Any], layout: str | None = None) -> LoadReport:
    """Load a vision-encoder state dict of any layout into ``model``.

    - blocks beyond ``config.num_layers`` are dropped with a note (EVA-CLIP-g has 40, BLIP-2 uses 39);
    - a position embedding for another grid is bicubically resized (224 px weights into a 364 px model);
    - any other shape mismatch is an error naming the key and both shapes.
    """
    config = model.config
    converted = convert_state_dict(state_dict, config.num_heads, layout)
    report = LoadReport()
    extra = sorted({i for k in converted if (i := _block_index(k)) is not None and i >= config.num_layers})
    if extra:
        converted = {k: v for k, v in converted.items() if (_block_index(k) or 0) < config.num_layers}
        report.notes.append(f"dropped blocks {extra} (the model has {config.num_layers})")

    pos = converted.get("pos_embed")
    if pos is not None and pos.shape[1] != config.num_positions:
        resized = resize_position_embedding(paddle.to_tensor(pos, dtype="float32"), config.grid_size)
        converted["pos_embed"] = resized.numpy()
        report.notes.append(f"resized pos_embed {tuple(pos.shape)} -> {tuple(resized.shape)}")

    params = model.state_dict()
    for key, value in converted.items():
        if key not in params:
            report.unexpected.append(key)
            continue
        target = params[key]
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(
                f"shape mismatch for {key}: checkpoint {tuple(value.shape)} vs model {tuple(target.shape)}"
            )
        target.set_value(paddle.to_tensor(value.astype(np.float32)).astype(target.dtype))
    report.missing = sorted(set(params) - set(converted))
    for note in report.notes:
        logger.info(note)
    return report
