"""LAVIS / EVA-CLIP ``eva_vit.py`` layout (keys after ``visual_encoder.``).

timm-style names: ``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.i.{norm1,norm2,attn.qkv,
attn.q_bias,attn.v_bias,attn.proj,mlp.fc1,mlp.fc2}``; torch Linear weights are [out, in]; the qkv Linear
has no bias of its own, ``q_bias`` and ``v_bias`` stand beside it.
"""

from __future__ import annotations

import re

import numpy as np

from ._qkv import unfuse_qkv

_LINEAR_WEIGHT = re.compile(r"^blocks\.\d+\.(attn\.proj|mlp\.fc1|mlp\.fc2)\.weight$")
_ATTN = re.compile(r"^(blocks\.\d+\.attn\.)(qkv\.weight|qkv\.bias|q_bias|v_bias)$")


def matches(state_dict: dict) -> bool:
    qkv = state_dict.get("blocks.0.attn.qkv.weight")
    return qkv is not None and qkv.shape[0] > qkv.shape[1]  # torch: [3D, D]


def from_timm_style(sd: dict[str, np.ndarray], num_heads: int, torch_linear: bool) -> dict[str, np.ndarray]:
    """The timm-style names shared by LAVIS and PaddleMIX; only the Linear orientation differs."""
    out: dict[str, np.ndarray] = {}
    for key, value in sd.items():
        attn = _ATTN.match(key)
        if key.startswith("patch_embed.proj."):
            out["patch_embed." + key[len("patch_embed.proj.") :]] = value
        elif attn and attn.group(2) == "qkv.weight":
            weight = value.T if torch_linear else value
            out.update(unfuse_qkv(attn.group(1), weight, sd.get(attn.group(1) + "qkv.bias"), num_heads))
        elif attn and attn.group(2) in ("q_bias", "v_bias"):
            out[key] = value
        elif not attn:  # a fused qkv.bias was consumed with its weight
            out[key] = value.T if torch_linear and _LINEAR_WEIGHT.match(key) else value
    return out


def from_lavis(sd: dict[str, np.ndarray], num_heads: int) -> dict[str, np.ndarray]:
    return from_timm_style(sd, num_heads, torch_linear=True)
