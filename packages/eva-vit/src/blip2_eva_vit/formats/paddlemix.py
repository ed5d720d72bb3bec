"""PaddleMIX ``eva_vit.py`` layout (keys after ``visual_encoder.``).

The LAVIS names with paddle Linear weights ([in, out]) and a fused ``attn.qkv.bias``.
"""

from __future__ import annotations

import numpy as np

from .lavis import from_timm_style


def matches(state_dict: dict) -> bool:
    qkv = state_dict.get("blocks.0.attn.qkv.weight")
    return qkv is not None and qkv.shape[0] < qkv.shape[1]  # paddle: [D, 3D]


def from_paddlemix(sd: dict[str, np.ndarray], num_heads: int) -> dict[str, np.ndarray]:
    return from_timm_style(sd, num_heads, torch_linear=False)
