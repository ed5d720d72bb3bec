"""HF transformers layout of whole BLIP-2 checkpoints (``Salesforce/blip2-*``) and their config.json.

``vision_model.*`` (the encoder; its ``post_layernorm`` is our ``ln_vision``), ``query_tokens``,
``qformer.*``, ``language_projection``, ``language_model.*`` (HF OPT / T5 / LLaMA names); retrieval models add
``embeddings.*``, ``vision_projection``, ``text_projection``, ``itm_head``. Torch Linear weights are [out, in].
The vision and Q-Former key names are mapped by their own packages; the LLM's here.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from blip2_eva_vit import EvaVitConfig
from blip2_eva_vit import convert_state_dict as convert_vision
from blip2_qformer import QFormerConfig
from blip2_qformer import convert_state_dict as convert_bridge

_OPT_LAYER = {
    "self_attn.q_proj.": "self_attn.q_proj.",
    "self_attn.k_proj.": "self_attn.k_proj.",
    "self_attn.v_proj.": "self_attn.v_proj.",
    "self_attn.out_proj.": "self_attn.out_proj.",
    "self_attn_layer_norm.": "norm1.",
    "final_layer_norm.": "norm2.",
    "fc1.": "linear1.",
    "fc2.": "linear2.",
}


def matches(state_dict: dict) -> bool:
    return (
        any(k.startswith("qformer.encoder.") for k in state_dict)
        or "vision_model.embeddings.class_embedding" in state_dict
    )


def llm_from_hf(sd: dict[str, np.ndarray], model_type: str) -> dict[str, np.ndarray]:
    """HF (torch) OPT / T5 weights -> paddlenlp's names under our ``language_model.model.``."""
    out: dict[str, np.ndarray] = {}
    if model_type == "opt":
        for key, value in sd.items():
            if key == "model.decoder.embed_tokens.weight":
                out["opt.embeddings.word_embeddings.weight"] = value
            elif key == "model.decoder.embed_positions.weight":
                out["opt.embeddings.position_embeddings.weight"] = value
            elif key.startswith("model.decoder.final_layer_norm."):
                out["opt.decoder." + key[len("model.decoder.") :]] = value
            elif key == "lm_head.weight":
                out["lm_head.decoder_weight"] = value  # [vocab, hidden] in both
            elif m := re.match(r"^model\.decoder\.layers\.(\d+)\.(.*)$", key):
                rest = next(
                    (new + m.group(2)[len(old) :] for old, new in _OPT_LAYER.items() if m.group(2).startswith(old)),
                    None,
                )
                if rest is None:
                    out["unknown:" + key] = value
                    continue
                linear = rest.endswith(".weight") and not rest.startswith("norm")
                out[f"opt.decoder.layers.{m.group(1)}.{rest}"] = value.T if linear else value
            else:
                out["unknown:" + key] = value
        if "lm_head.decoder_weight" not in out and "opt.embeddings.word_embeddings.weight" in out:
            out["lm_head.decoder_weight"] = out["opt.embeddings.word_embeddings.weight"]  # tied in OPT
    elif model_type == "llama":
        for key, value in sd.items():
            if key == "lm_head.weight":
                out["lm_head.weight"] = value.T  # paddlenlp's head is [hidden, vocab]
            elif key.startswith("model."):
                linear = value.ndim == 2 and key.endswith("_proj.weight")
                out["llama." + key[len("model.") :]] = value.T if linear else value
            else:
                out["unknown:" + key] = value
        if "lm_head.weight" not in out and "llama.embed_tokens.weight" in out:  # tie_word_embeddings
            out["lm_head.weight"] = out["llama.embed_tokens.weight"].T
    elif model_type == "t5":
        for key, value in sd.items():
            if key == "lm_head.weight":
                out["lm_head.weight"] = value.T
            elif key == "shared.weight" or key.endswith("embed_tokens.weight") or "relative_attention_bias" in key:
                out["t5." + key] = value
            elif key.startswith(("encoder.", "decoder.")):
                out["t5." + key] = value.T if value.ndim == 2 else value
            else:
                out["unknown:" + key] = value
        for side in ("encoder", "decoder"):  # HF stores the tied embedding tables once, as shared
            if "t5.shared.weight" in out:
                out.setdefault(f"t5.{side}.embed_tokens.weight", out["t5.shared.weight"])
    else:
        raise ValueError(f"unsupported language model type {model_type!r}")
    return {(k[len("unknown:") :] if k.startswith("unknown:") else "model." + k): v for k, v in out.items()}


def convert(sd: dict[str, np.ndarray], vision_heads: int, llm_type: str | None) -> dict[str, np.ndarray]:
    """A whole HF BLIP-2 state dict -> our names (``vision_model``, ``qformer``, heads, ``language_*``)."""
    vision = {
        k[len("vision_model.") :]: v
        for k, v in sd.items()
        if k.startswith("vision_model.") and "post_layernorm" not in k
    }
    out = (
        {"vision_model." + k: v for k, v in convert_vision(vision, "hf", num_heads=vision_heads).items()}
        if vision
        else {}
    )
    rest = {k: v for k, v in sd.items() if not (k.startswith("vision_model.") and "post_layernorm" not in k)}
    llm = {k[len("language_model.") :]: v for k, v in rest.items() if k.startswith("language_model.")}
    rest = {k: v for k, v in rest.items() if not k.startswith("language_model.")}
    for key, value in convert_bridge(rest, "hf").items():
        if key.startswith("language_projection."):
            out[key] = value.T if key.endswith("weight") else value
        else:
            out[key] = value
    if llm:
        if llm_type is None:
            raise ValueError("the checkpoint has language_model.* weights but the config names no text model")
        out.update({"language_model." + k: v for k, v in llm_from_hf(llm, llm_type).items()})
    return out


# -- config.json ---------------------------------------------------------------------------------


def is_hf_config(config: dict[str, Any]) -> bool:
    vision = config.get("vision_config")
    return (
        isinstance(vision, dict)
        and "num_hidden_layers" in vision
        or "qformer_config" in config
        and "cross_attention_frequency" in config.get("qformer_config", {})
    )


def vision_config_from_hf(vision: dict[str, Any]) -> EvaVitConfig:
    defaults = EvaVitConfig()
    return EvaVitConfig(
        image_size=vision.get("image_size", defaults.image_size),
        patch_size=vision.get("patch_size", defaults.patch_size),
        hidden_size=vision.get("hidden_size", defaults.hidden_size),
        num_layers=vision.get("num_hidden_layers", defaults.num_layers),
        num_heads=vision.get("num_attention_heads", defaults.num_heads),
        mlp_hidden_size=vision.get("intermediate_size", defaults.mlp_hidden_size),
        layer_norm_eps=vision.get("layer_norm_eps", defaults.layer_norm_eps),
        qkv_bias=vision.get("qkv_bias", True),
        attention_dropout=vision.get("attention_dropout", 0.0),
    )


def bert_sizes(values: dict[str, Any]) -> dict[str, Any]:
    """QFormerConfig arguments from BERT's config keys, which HF's Q-Former config and PaddleMIX's config.json share."""
    defaults = QFormerConfig()
    return dict(
        hidden_size=values.get("hidden_size", defaults.hidden_size),
        num_layers=values.get("num_hidden_layers", defaults.num_layers),
        num_heads=values.get("num_attention_heads", defaults.num_heads),
        intermediate_size=values.get("intermediate_size", defaults.intermediate_size),
        hidden_dropout=values.get("hidden_dropout_prob", defaults.hidden_dropout),
        attention_dropout=values.get("attention_probs_dropout_prob", defaults.attention_dropout),
        max_position_embeddings=values.get("max_position_embeddings", defaults.max_position_embeddings),
        layer_norm_eps=values.get("layer_norm_eps", defaults.layer_norm_eps),
        pad_token_id=values.get("pad_token_id", 0),
    )


def qformer_config_from_hf(
    qformer: dict[str, Any], vision: EvaVitConfig, vision_eps: float, num_query_tokens: int
) -> QFormerConfig:
    defaults = QFormerConfig()
    vocab = qformer.get("vocab_size", 30522)
    text_input = bool(qformer.get("use_qformer_text_input", False))
    return QFormerConfig(
        # HF's stage-2 configs keep BERT's 30522 but carry no embeddings; ITM checkpoints have 30523 rows,
        # the last being LAVIS's added [DEC]
        vocab_size=vocab,
        **bert_sizes(qformer),
        cross_attention_freq=qformer.get("cross_attention_frequency", defaults.cross_attention_freq),
        encoder_hidden_size=qformer.get("encoder_hidden_size", vision.hidden_size),
        vision_layer_norm_eps=vision_eps,
        num_query_tokens=num_query_tokens,
        bos_token_id=vocab - 1 if text_input else defaults.bos_token_id,
        has_text_input=text_input,
    )
