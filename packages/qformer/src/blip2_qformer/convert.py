"""Checkpoint layouts of the Q-Former and its stage-1 heads, mapped to ours.

Keys are those of a full BLIP-2 checkpoint, limited to what belongs to the bridge:

- ``hf``: HF transformers ``Blip2*`` models: ``query_tokens``, ``qformer.*`` (``attention.attention``),
  ``vision_model.post_layernorm`` (our ``ln_vision``), and for retrieval models ``embeddings.*``,
  ``vision_projection``, ``text_projection``, ``itm_head``. Torch Linear weights are [out, in].
- ``lavis``: ``ln_vision``, ``query_tokens``, ``Qformer.bert.*`` (``attention.self``), ``Qformer.cls.*``,
  ``vision_proj``, ``text_proj``, ``itm_head``, ``temp``. Torch Linear weights.
- ``paddlemix``: the LAVIS names, all under ``Qformer.`` (``Qformer.ln_vision``, ``Qformer.bert.*``, ...),
  with paddle Linear weights ([in, out]).

The result uses the names of ``QFormerForPretraining`` (``qformer.*`` plus the heads). Keys of
other parts (vision encoder, language model, projection to it) pass through unchanged.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

LAYOUTS = ("native", "hf", "lavis", "paddlemix")

# BERT names shared by LAVIS and PaddleMIX (after ``bert.``), and HF's (after ``qformer.``).
_BERT_LAYER_RENAMES = {
    "attention.self.": "attention.",
    "attention.output.dense.": "attention.output.",
    "attention.output.LayerNorm.": "attention.layer_norm.",
    "crossattention.self.": "crossattention.",
    "crossattention.output.dense.": "crossattention.output.",
    "crossattention.output.LayerNorm.": "crossattention.layer_norm.",
    "intermediate.dense.": "ffn.fc1.",
    "output.dense.": "ffn.fc2.",
    "output.LayerNorm.": "ffn.layer_norm.",
    "intermediate_query.dense.": "query_ffn.fc1.",
    "output_query.dense.": "query_ffn.fc2.",
    "output_query.LayerNorm.": "query_ffn.layer_norm.",
}
_HF_LAYER_RENAMES = {
    **{k.replace("attention.self.", "attention.attention."): v for k, v in _BERT_LAYER_RENAMES.items()},
    "crossattention.attention.": "crossattention.",
}
_BERT_TOP_RENAMES = {
    "bert.embeddings.word_embeddings.weight": "qformer.embeddings.word_embeddings.weight",
    "bert.embeddings.position_embeddings.weight": "qformer.embeddings.position_embeddings.weight",
    "bert.embeddings.LayerNorm.weight": "qformer.embeddings.layer_norm.weight",
    "bert.embeddings.LayerNorm.bias": "qformer.embeddings.layer_norm.bias",
    "cls.predictions.transform.dense.weight": "lm_head.dense.weight",
    "cls.predictions.transform.dense.bias": "lm_head.dense.bias",
    "cls.predictions.transform.LayerNorm.weight": "lm_head.layer_norm.weight",
    "cls.predictions.transform.LayerNorm.bias": "lm_head.layer_norm.bias",
    "cls.predictions.bias": "lm_head.bias",
}
_HEAD_RENAMES = {
    "ln_vision.weight": "qformer.ln_vision.weight",
    "ln_vision.bias": "qformer.ln_vision.bias",
    "query_tokens": "qformer.query_tokens",
    "vision_proj.weight": "vision_proj.weight",
    "vision_proj.bias": "vision_proj.bias",
    "text_proj.weight": "text_proj.weight",
    "text_proj.bias": "text_proj.bias",
    "itm_head.weight": "itm_head.weight",
    "itm_head.bias": "itm_head.bias",
    "temp": "temp",
}
_HF_TOP_RENAMES = {
    "vision_model.post_layernorm.weight": "qformer.ln_vision.weight",
    "vision_model.post_layernorm.bias": "qformer.ln_vision.bias",
    "query_tokens": "qformer.query_tokens",
    "qformer.layernorm.weight": "qformer.embeddings.layer_norm.weight",
    "qformer.layernorm.bias": "qformer.embeddings.layer_norm.bias",
    "embeddings.word_embeddings.weight": "qformer.embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight": "qformer.embeddings.position_embeddings.weight",
    "vision_projection.weight": "vision_proj.weight",
    "vision_projection.bias": "vision_proj.bias",
    "text_projection.weight": "text_proj.weight",
    "text_projection.bias": "text_proj.bias",
    "itm_head.weight": "itm_head.weight",
    "itm_head.bias": "itm_head.bias",
}
# Present in some checkpoints, never used by the model: position-id buffers, BERT token types
# (PaddleMIX), the LM decoder (tied to the word embeddings) and its bias (a copy of lm_head.bias).
_IGNORED = re.compile(r"(^|\.)position_ids$|token_type_embeddings\.weight$|cls\.predictions\.decoder\.(weight|bias)$")
_NOT_LINEAR = re.compile(r"(embeddings\.|layer_norm\.|ln_vision\.|query_tokens$|temp$|lm_head\.bias$)")


@dataclass
class LoadReport:
    """What a load did not use (``unexpected``) and what it did not find (``missing``)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def detect_layout(state_dict: dict[str, Any]) -> str:
    """Guess the layout of a (full or bridge-only) BLIP-2 state dict."""
    keys = set(state_dict)
    if any(k.startswith("qformer.layers.") for k in keys):
        return "native"
    if any(k.startswith("qformer.encoder.") for k in keys):
        return "hf"
    if "Qformer.query_tokens" in keys or "Qformer.ln_vision.weight" in keys:
        return "paddlemix"
    if any(k.startswith("Qformer.bert.") for k in keys):
        return "lavis"
    raise ValueError(
        "cannot tell the Q-Former checkpoint layout: no qformer.encoder, Qformer.bert or qformer.layers keys"
    )


def _rename_layer(rest: str, renames: dict[str, str]) -> str | None:
    for old, new in renames.items():
        if rest.startswith(old):
            return new + rest[len(old) :]
    return None


def convert_state_dict(state_dict: dict[str, Any], layout: str | None = None) -> dict[str, np.ndarray]:
    """Map a BLIP-2 state dict of any known layout to ``QFormerForPretraining`` names and shapes."""
    sd = {k: np.asarray(v) for k, v in state_dict.items()}
    layout = layout or detect_layout(sd)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown Q-Former checkpoint layout {layout!r}; expected one of {LAYOUTS}")
    if layout == "native":
        return sd
    torch_linear = layout in ("hf", "lavis")
    out: dict[str, np.ndarray] = {}
    for key, value in sd.items():
        name = _rename_key(key, layout)
        if name is None:
            if not _IGNORED.search(key):
                out[key] = value  # not ours: passed through for the caller (or reported as unexpected)
            continue
        if torch_linear and name.endswith(".weight") and value.ndim == 2 and not _NOT_LINEAR.search(name):
            value = value.T
        out[name] = value
    return out


def _rename_key(key: str, layout: str) -> str | None:
    if layout == "hf":
        if key in _HF_TOP_RENAMES:
            return _HF_TOP_RENAMES[key]
        m = re.match(r"^qformer\.encoder\.layer\.(\d+)\.(.*)$", key)
        if m:
            rest = _rename_layer(m.group(2), _HF_LAYER_RENAMES)
            return f"qformer.layers.{m.group(1)}.{rest}" if rest else None
        return None
    if layout == "paddlemix":
        if not key.startswith("Qformer."):
            return None
        key = key[len("Qformer.") :]
    elif key.startswith("Qformer."):
        key = key[len("Qformer.") :]
    elif key not in _HEAD_RENAMES:
        return None
    if key in _HEAD_RENAMES:
        return _HEAD_RENAMES[key]
    if key in _BERT_TOP_RENAMES:
        return _BERT_TOP_RENAMES[key]
    m = re.match(r"^bert\.encoder\.layer\.(\d+)\.(.*)$", key)
    if m:
        rest = _rename_layer(m.group(2), _BERT_LAYER_RENAMES)
        return f"qformer.layers.{m.group(1)}.{rest}" if rest else None
    return None


def load_pretrained(model: Any, state_dict: dict[str, Any], layout: str | None = None) -> LoadReport:
    """Load a checkpoint of any layout into a ``QFormer`` or a ``QFormerForPretraining``.

    Keys that are not the model's are reported as ``unexpected``; a shape mismatch is an error
    naming the key and both shapes.
    """
    import paddle

    converted = convert_state_dict(state_dict, layout)
    from .model import QFormer

    if isinstance(model, QFormer):
        converted = {
            (k[len("qformer.") :] if k.startswith("qformer.") else "heads:" + k): v for k, v in converted.items()
        }
    params = model.state_dict()
    report = LoadReport()
    for key, value in converted.items():
        if key not in params:
            report.unexpected.append(key.removeprefix("heads:"))
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
