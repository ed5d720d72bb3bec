"""Loading a vision-encoder checkpoint of any layout (see ``formats``) into an ``EvaVisionTransformer``."""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np
import paddle

from blip2_encoder_common import LoadReport, assign_weights, in_dtype

from .config import EvaVitConfig
from .formats import convert_state_dict
from .model import EvaVisionTransformer, resize_position_embedding


def _block_index(key: str) -> int | None:
    m = re.match(r"^blocks\.(\d+)\.", key)
    return int(m.group(1)) if m else None


def fit_to_config(state: dict[str, np.ndarray], config: EvaVitConfig) -> tuple[dict[str, np.ndarray], list[str]]:
    """Our-named encoder weights made to fit ``config``; returns them and notes on what changed.

    - blocks beyond ``config.num_layers`` are dropped (EVA-CLIP-g has 40, BLIP-2 uses 39);
    - a position embedding for another grid is bicubically resized (224 px weights into a 364 px model).
    """
    notes = []
    extra = sorted({i for k in state if (i := _block_index(k)) is not None and i >= config.num_layers})
    if extra:
        state = {k: v for k, v in state.items() if (_block_index(k) or 0) < config.num_layers}
        notes.append(f"dropped blocks {extra} (the model has {config.num_layers})")
    pos = state.get("pos_embed")
    if pos is not None and pos.shape[1] != config.num_positions:
        resized = resize_position_embedding(paddle.to_tensor(in_dtype(pos, "float32")), config.grid_size)
        state = {**state, "pos_embed": resized.numpy()}
        notes.append(f"resized pos_embed {tuple(pos.shape)} -> {tuple(resized.shape)}")
    return state, notes


def load_pretrained(model: EvaVisionTransformer, state_dict: dict[str, Any], layout: str | None = None) -> LoadReport:
    """Load a vision-encoder state dict of any layout into ``model``.

    Extra blocks are dropped and positions resized (``fit_to_config``); any other shape mismatch is an
    error naming the key and both shapes.
    """
    config = model.config
    converted, notes = fit_to_config(convert_state_dict(state_dict, layout, num_heads=config.num_heads), config)
    report = assign_weights(model, converted)
    report.notes = notes
    report.log("vision encoder checkpoint", logging.INFO)
    return report
