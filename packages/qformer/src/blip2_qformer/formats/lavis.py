"""LAVIS layout: ``ln_vision``, ``query_tokens``, ``Qformer.bert.*`` (BERT names, ``attention.self``),
``Qformer.cls.predictions.*``, ``vision_proj``, ``text_proj``, ``itm_head``, ``temp``; torch Linear weights.
"""

from __future__ import annotations

import re

BERT_LAYER = {
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
BERT_TOP = {
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
HEADS = {
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
TORCH_LINEAR = True


def matches(keys: set[str]) -> bool:
    return any(k.startswith("Qformer.bert.") for k in keys) and "Qformer.query_tokens" not in keys


def rename_bridge_key(key: str) -> str | None:
    """A bridge key with LAVIS's names (``Qformer.`` removed for the BERT part) -> ours, None if not ours."""
    if key in HEADS:
        return HEADS[key]
    if key in BERT_TOP:
        return BERT_TOP[key]
    m = re.match(r"^bert\.encoder\.layer\.(\d+)\.(.*)$", key)
    if m:
        for old, new in BERT_LAYER.items():
            if m.group(2).startswith(old):
                return f"qformer.layers.{m.group(1)}.{new}{m.group(2)[len(old) :]}"
    return None


def rename(key: str) -> str | None:
    if key.startswith("Qformer."):
        return rename_bridge_key(key[len("Qformer.") :])
    return HEADS.get(key)
