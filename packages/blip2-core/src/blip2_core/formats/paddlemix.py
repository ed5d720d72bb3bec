"""PaddleMIX layout of whole BLIP-2 checkpoints (``model_state.pdparams``) and its config.json.

``visual_encoder.*`` (paddle Linear weights, fused qkv bias), the bridge under ``Qformer.`` (with the
stage-2 ``Qformer.language_projection``), ``temp`` ([1], stage 1) and ``language_model.*`` in paddlenlp's own
names. PaddleMIX also ships the parts alone: the vision encoder (``eva_vit_g``, with or without
``visual_encoder.``) and the bridge (the Q-Former module's keys, without ``Qformer.``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from blip2_eva_vit import EvaVitConfig
from blip2_eva_vit import convert_state_dict as convert_vision
from blip2_qformer import QFormerConfig
from blip2_qformer import convert_state_dict as convert_bridge
from blip2_qformer.formats import paddlemix as bridge_layout

from .hf import bert_sizes


def matches(state_dict: dict) -> bool:
    """A whole PaddleMIX checkpoint, or its bridge alone (the Q-Former module's keys, without ``Qformer.``)."""
    return bridge_layout.matches(set(state_dict))


def convert(sd: dict[str, np.ndarray], vision_heads: int, llm_type: str | None) -> dict[str, np.ndarray]:
    vision = {k[len("visual_encoder.") :]: v for k, v in sd.items() if k.startswith("visual_encoder.")}
    out = (
        {"vision_model." + k: v for k, v in convert_vision(vision, "paddlemix", num_heads=vision_heads).items()}
        if vision
        else {}
    )
    rest = {k: v for k, v in sd.items() if not k.startswith("visual_encoder.")}
    for key, value in convert_bridge(rest, "paddlemix").items():
        if key.startswith(("Qformer.language_projection.", "language_projection.")):  # whole file or bridge alone
            out["language_projection." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("language_model."):
            out["language_model.model." + key[len("language_model.") :]] = value
        else:
            out[key] = value
    return out


# -- PaddleMIX's config.json --------------------------------------------------------------------


def is_paddlemix_config(config: dict[str, Any]) -> bool:
    vision = config.get("vision_config")
    return (
        isinstance(vision, dict)
        and ("depth" in vision or "embed_dim" in vision)
        or any(k in config for k in ("vision_name_or_path", "bridge_name_or_path", "vision_and_bridge_name_or_path"))
    )


def vision_config_from_paddlemix(vision: dict[str, Any]) -> EvaVitConfig:
    defaults = EvaVitConfig()
    width = vision.get("embed_dim", defaults.hidden_size)
    mlp_ratio = vision.get("mlp_ratio")
    return EvaVitConfig(
        image_size=vision.get("img_size", defaults.image_size),
        patch_size=vision.get("patch_size", defaults.patch_size),
        hidden_size=width,
        num_layers=vision.get("depth", defaults.num_layers),
        num_heads=vision.get("num_heads", defaults.num_heads),
        mlp_hidden_size=int(width * mlp_ratio) if mlp_ratio else defaults.mlp_hidden_size,
        layer_norm_eps=vision.get("epsilon", defaults.layer_norm_eps),
        qkv_bias=vision.get("qkv_bias", True),
        dropout=vision.get("drop_rate", 0.0) or 0.0,
        gradient_checkpointing=bool(vision.get("gradient_checkpointing", False)),
    )


def qformer_config_from_paddlemix(
    qformer: dict[str, Any], vision: EvaVitConfig, num_query_tokens: int | None, has_text_input: bool
) -> QFormerConfig:
    defaults = QFormerConfig()
    vocab = qformer.get("vocab_size", 30522)
    if has_text_input and vocab == 30522:
        vocab += 1  # BERT's vocabulary + [DEC], as LAVIS resizes it
    return QFormerConfig(
        vocab_size=vocab,
        bos_token_id=vocab - 1 if has_text_input else defaults.bos_token_id,  # [DEC] is the last token
        **bert_sizes(qformer),
        cross_attention_freq=qformer.get("cross_attention_freq", defaults.cross_attention_freq),
        encoder_hidden_size=vision.hidden_size,
        num_query_tokens=num_query_tokens or qformer.get("num_query_tokens", defaults.num_query_tokens),
        vision_layer_norm_eps=qformer.get("vision_layer_norm_eps", defaults.vision_layer_norm_eps),
        embed_dim=qformer.get("embed_dim", defaults.embed_dim),
        has_text_input=has_text_input,
    )
