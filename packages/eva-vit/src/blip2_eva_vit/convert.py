"""Checkpoint layouts of the vision encoder, mapped to ours.

Three layouts exist in the wild, each with the encoder's keys once its outer prefix is removed
(``vision_model.`` for HF, ``visual_encoder.`` for LAVIS and PaddleMIX):

- ``hf``: HF transformers ``Blip2VisionModel`` (torch Linear weights are [out, in]; fused
  ``qkv.bias`` whose key slice is a parameter).
- ``lavis``: LAVIS / EVA-CLIP ``eva_vit.py`` (torch; ``q_bias`` and ``v_bias`` beside a bias-free qkv).
- ``paddlemix``: PaddleMIX ``eva_vit.py`` (paddle Linear weights are [in, out]; fused qkv bias).

All arrays are numpy so that no framework is needed to read a checkpoint. A bias on the keys
is dropped: it adds the same amount to every score of a query row, which softmax ignores.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import EvaVitConfig

logger = logging.getLogger(__name__)

LAYOUTS = ("native", "hf", "lavis", "paddlemix")


@dataclass
class LoadReport:
    """What a load did not use (``unexpected``) and what it did not find (``missing``)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def detect_layout(state_dict: dict[str, Any]) -> str:
    """Guess the layout of a vision-encoder state dict (outer prefix already removed)."""
    if "embeddings.class_embedding" in state_dict:
        return "hf"
    if "blocks.0.attn.q_weight" in state_dict:
        return "native"
    if "blocks.0.attn.qkv.weight" in state_dict:
        qkv = state_dict["blocks.0.attn.qkv.weight"]
        # torch stores [3*D, D], paddle [D, 3*D]
        return "lavis" if qkv.shape[0] > qkv.shape[1] else "paddlemix"
    raise ValueError("cannot tell the vision checkpoint layout: no class embedding, cls token or qkv weight found")


def _split_heads(weight_in_out: np.ndarray, num_heads: int) -> np.ndarray:
    """[D_in, H*d] (paddle Linear layout) -> [H, D_in, d]."""
    d_in, d_out = weight_in_out.shape
    return weight_in_out.reshape(d_in, num_heads, d_out // num_heads).transpose(1, 0, 2)


def _merge_heads(weight_heads: np.ndarray) -> np.ndarray:
    """[H, D_in, d] -> [D_in, H*d]."""
    heads, d_in, head_dim = weight_heads.shape
    return weight_heads.transpose(1, 0, 2).reshape(d_in, heads * head_dim)


def _fused_qkv(prefix: str, qkv_in_out: np.ndarray, qkv_bias: np.ndarray | None, num_heads: int) -> dict:
    width = qkv_in_out.shape[0]
    q, k, v = (qkv_in_out[:, i * width : (i + 1) * width] for i in range(3))
    out = {
        f"{prefix}q_weight": _split_heads(q, num_heads),
        f"{prefix}k_weight": _split_heads(k, num_heads),
        f"{prefix}v_weight": _split_heads(v, num_heads),
    }
    if qkv_bias is not None:
        out[f"{prefix}q_bias"] = qkv_bias[:width]
        out[f"{prefix}v_bias"] = qkv_bias[2 * width :]
    return out


# Per-block renames shared by the timm-style layouts (LAVIS, PaddleMIX) and HF; qkv is handled apart.
_HF_BLOCK_RENAMES = {
    "layer_norm1.": "norm1.",
    "layer_norm2.": "norm2.",
    "self_attn.projection.": "attn.proj.",
    "mlp.fc1.": "mlp.fc1.",
    "mlp.fc2.": "mlp.fc2.",
}
_HF_TOP_RENAMES = {
    "embeddings.class_embedding": "cls_token",
    "embeddings.position_embedding": "pos_embed",
    "embeddings.patch_embedding.weight": "patch_embed.weight",
    "embeddings.patch_embedding.bias": "patch_embed.bias",
}
_LINEAR_WEIGHT = re.compile(r"^blocks\.\d+\.(attn\.proj|mlp\.fc1|mlp\.fc2)\.weight$")


def _from_hf(sd: dict[str, np.ndarray], num_heads: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key, value in sd.items():
        if key in _HF_TOP_RENAMES:
            out[_HF_TOP_RENAMES[key]] = value
            continue
        m = re.match(r"^encoder\.layers\.(\d+)\.(.*)$", key)
        if not m:
            out[key] = value  # reported as unexpected by the loader (e.g. post_layernorm)
            continue
        block, rest = f"blocks.{m.group(1)}.", m.group(2)
        if rest == "self_attn.qkv.weight":
            out.update(
                _fused_qkv(
                    block + "attn.", value.T, sd.get(f"encoder.layers.{m.group(1)}.self_attn.qkv.bias"), num_heads
                )
            )
            continue
        if rest == "self_attn.qkv.bias":
            continue  # consumed with the weight
        for old, new in _HF_BLOCK_RENAMES.items():
            if rest.startswith(old):
                name = block + new + rest[len(old) :]
                out[name] = value.T if _LINEAR_WEIGHT.match(name) else value
                break
        else:
            out[key] = value
    return out


def _from_timm_style(sd: dict[str, np.ndarray], num_heads: int, torch_linear: bool) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key, value in sd.items():
        if key.startswith("patch_embed.proj."):
            out["patch_embed." + key[len("patch_embed.proj.") :]] = value
            continue
        m = re.match(r"^(blocks\.\d+\.attn\.)(qkv\.weight|qkv\.bias|q_bias|v_bias)$", key)
        if m:
            prefix, name = m.groups()
            if name == "qkv.weight":
                weight = value.T if torch_linear else value
                out.update(_fused_qkv(prefix, weight, sd.get(prefix + "qkv.bias"), num_heads))
            elif name in ("q_bias", "v_bias"):
                out[prefix + name] = value
            continue
        out[key] = value.T if torch_linear and _LINEAR_WEIGHT.match(key) else value
    return out


def convert_state_dict(state_dict: dict[str, Any], num_heads: int, layout: str | None = None) -> dict[str, np.ndarray]:
    """Map a vision-encoder state dict of any known layout to our parameter names and shapes.

    Keys that belong to no known parameter pass through unchanged, so a loader can report them.
    """
    sd = {k: np.asarray(v) for k, v in state_dict.items()}
    layout = layout or detect_layout(sd)
    if layout == "native":
        return sd
    if layout == "hf":
        return _from_hf(sd, num_heads)
    if layout in ("lavis", "paddlemix"):
        return _from_timm_style(sd, num_heads, torch_linear=layout == "lavis")
    raise ValueError(f"unknown vision checkpoint layout {layout!r}; expected one of {LAYOUTS}")


def to_hf_state_dict(native: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Our names -> HF ``Blip2VisionModel`` names (torch [out, in] Linear weights, fused qkv bias)."""
    top = {v: k for k, v in _HF_TOP_RENAMES.items()}
    block_renames = {v: k for k, v in _HF_BLOCK_RENAMES.items()}
    out: dict[str, np.ndarray] = {}
    for key, value in native.items():
        if key in top:
            out[top[key]] = value
            continue
        m = re.match(r"^blocks\.(\d+)\.(.*)$", key)
        if not m:
            out[key] = value
            continue
        layer, rest = f"encoder.layers.{m.group(1)}.", m.group(2)
        if rest == "attn.q_weight":
            prefix = f"blocks.{m.group(1)}.attn."
            qkv = np.concatenate([_merge_heads(native[prefix + n]) for n in ("q_weight", "k_weight", "v_weight")], 1)
            out[layer + "self_attn.qkv.weight"] = qkv.T
            if prefix + "q_bias" in native:
                q_bias = native[prefix + "q_bias"]
                bias = np.concatenate([q_bias, np.zeros_like(q_bias), native[prefix + "v_bias"]])
                out[layer + "self_attn.qkv.bias"] = bias
            continue
        if rest in ("attn.k_weight", "attn.v_weight", "attn.q_bias", "attn.v_bias"):
            continue
        for new, old in block_renames.items():
            if rest.startswith(new):
                out[layer + old + rest[len(new) :]] = value.T if _LINEAR_WEIGHT.match(key) else value
                break
        else:
            out[key] = value
    return out


def load_pretrained(model: Any, state_dict: dict[str, Any], layout: str | None = None) -> LoadReport:
    """Load a vision-encoder state dict of any layout into ``model`` (an ``EvaVisionTransformer``).

    - blocks beyond ``config.num_layers`` are dropped with a note (EVA-CLIP-g has 40, BLIP-2 uses 39);
    - a position embedding for another grid is bicubically resized (224 px weights into a 364 px model);
    - any other shape mismatch is an error naming the key and both shapes.
    """
    import paddle

    from .model import resize_position_embedding

    config: EvaVitConfig = model.config
    converted = convert_state_dict(state_dict, config.num_heads, layout)
    report = LoadReport()
    extra_blocks = sorted(
        {
            int(m.group(1))
            for k in converted
            if (m := re.match(r"^blocks\.(\d+)\.", k)) and int(m.group(1)) >= config.num_layers
        }
    )
    if extra_blocks:
        converted = {
            k: v for k, v in converted.items() if not re.match(rf"^blocks\.({'|'.join(map(str, extra_blocks))})\.", k)
        }
        report.notes.append(f"dropped blocks {extra_blocks} (the model has {config.num_layers})")

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
