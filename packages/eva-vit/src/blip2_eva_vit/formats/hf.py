"""HF transformers ``Blip2VisionModel`` layout (keys after ``vision_model.``).

``embeddings.{class_embedding,position_embedding,patch_embedding}``, ``encoder.layers.i.{layer_norm1,
layer_norm2,self_attn.qkv,self_attn.projection,mlp.fc1,mlp.fc2}``; torch Linear weights are [out, in];
``self_attn.qkv.bias`` is fused (its key third is a parameter). ``post_layernorm`` is BLIP-2's ``ln_vision``,
which belongs to the Q-Former: it passes through untouched.
"""

from __future__ import annotations

import re

import numpy as np

from ._qkv import fuse_qkv, unfuse_qkv

_TOP = {
    "embeddings.class_embedding": "cls_token",
    "embeddings.position_embedding": "pos_embed",
    "embeddings.patch_embedding.weight": "patch_embed.weight",
    "embeddings.patch_embedding.bias": "patch_embed.bias",
}
_BLOCK = {
    "layer_norm1.": "norm1.",
    "layer_norm2.": "norm2.",
    "self_attn.projection.": "attn.proj.",
    "mlp.fc1.": "mlp.fc1.",
    "mlp.fc2.": "mlp.fc2.",
}
_LINEAR_WEIGHT = re.compile(r"^blocks\.\d+\.(attn\.proj|mlp\.fc1|mlp\.fc2)\.weight$")


def matches(state_dict: dict) -> bool:
    return "embeddings.class_embedding" in state_dict


def from_hf(sd: dict[str, np.ndarray], num_heads: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key, value in sd.items():
        if key in _TOP:
            out[_TOP[key]] = value
            continue
        m = re.match(r"^encoder\.layers\.(\d+)\.(.*)$", key)
        if not m:
            out[key] = value
            continue
        block, rest = f"blocks.{m.group(1)}.", m.group(2)
        if rest == "self_attn.qkv.weight":
            bias = sd.get(f"encoder.layers.{m.group(1)}.self_attn.qkv.bias")
            out.update(unfuse_qkv(block + "attn.", value.T, bias, num_heads))
        elif rest != "self_attn.qkv.bias":  # the bias is consumed with the weight
            out.update(_rename(block, rest, value, _BLOCK) or {key: value})
    return out


def to_hf(native: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Our names -> HF ``Blip2VisionModel`` names (torch [out, in] Linear weights, fused qkv bias)."""
    top = {v: k for k, v in _TOP.items()}
    block_names = {v: k for k, v in _BLOCK.items()}
    out: dict[str, np.ndarray] = {}
    for key, value in native.items():
        m = re.match(r"^blocks\.(\d+)\.(.*)$", key)
        if key in top:
            out[top[key]] = value
        elif not m:
            out[key] = value
        elif m.group(2) == "attn.q_weight":
            layer = f"encoder.layers.{m.group(1)}.self_attn.qkv."
            weight, bias = fuse_qkv(native, f"blocks.{m.group(1)}.attn.")
            out[layer + "weight"] = weight.T
            if bias is not None:
                out[layer + "bias"] = bias
        elif m.group(2) not in ("attn.k_weight", "attn.v_weight", "attn.q_bias", "attn.v_bias"):
            renamed = _rename(f"encoder.layers.{m.group(1)}.", m.group(2), value, block_names, transpose_if=key)
            out.update(renamed or {key: value})
    return out


def _rename(prefix: str, rest: str, value: np.ndarray, names: dict[str, str], transpose_if: str | None = None) -> dict:
    for old, new in names.items():
        if rest.startswith(old):
            name = prefix + new + rest[len(old) :]
            linear = _LINEAR_WEIGHT.match(transpose_if or name)
            return {name: value.T if linear else value}
    return {}
