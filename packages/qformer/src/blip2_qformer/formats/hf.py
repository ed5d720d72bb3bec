"""HF transformers ``Blip2*`` layout: ``query_tokens``, ``qformer.layernorm``, ``qformer.encoder.layer.i.*``
(``attention.attention``), ``vision_model.post_layernorm`` (our ``ln_vision``), and for retrieval models
``embeddings.*``, ``vision_projection``, ``text_projection``, ``itm_head``. Torch Linear weights.
HF's ``InstructBlip*`` models keep the Q-Former's text embeddings inside it: ``qformer.embeddings.*`` (their
LayerNorm is ``qformer.embeddings.layernorm``), with the same layer names.
HF has no LM head for the Q-Former and no temperature.
"""

from __future__ import annotations

import re

from .lavis import BERT_LAYER

LAYER = {
    **{k.replace("attention.self.", "attention.attention."): v for k, v in BERT_LAYER.items()},
    "crossattention.attention.": "crossattention.",
}
TOP = {
    "vision_model.post_layernorm.weight": "qformer.ln_vision.weight",
    "vision_model.post_layernorm.bias": "qformer.ln_vision.bias",
    "query_tokens": "qformer.query_tokens",
    "qformer.layernorm.weight": "qformer.embeddings.layer_norm.weight",
    "qformer.layernorm.bias": "qformer.embeddings.layer_norm.bias",
    "qformer.embeddings.layernorm.weight": "qformer.embeddings.layer_norm.weight",
    "qformer.embeddings.layernorm.bias": "qformer.embeddings.layer_norm.bias",
    "qformer.embeddings.word_embeddings.weight": "qformer.embeddings.word_embeddings.weight",
    "qformer.embeddings.position_embeddings.weight": "qformer.embeddings.position_embeddings.weight",
    "embeddings.word_embeddings.weight": "qformer.embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight": "qformer.embeddings.position_embeddings.weight",
    "vision_projection.weight": "vision_proj.weight",
    "vision_projection.bias": "vision_proj.bias",
    "text_projection.weight": "text_proj.weight",
    "text_projection.bias": "text_proj.bias",
    "itm_head.weight": "itm_head.weight",
    "itm_head.bias": "itm_head.bias",
}
TORCH_LINEAR = True


def matches(keys: set[str]) -> bool:
    return any(k.startswith("qformer.encoder.") for k in keys)


def rename(key: str) -> str | None:
    if key in TOP:
        return TOP[key]
    m = re.match(r"^qformer\.encoder\.layer\.(\d+)\.(.*)$", key)
    if m:
        for old, new in LAYER.items():
            if m.group(2).startswith(old):
                return f"qformer.layers.{m.group(1)}.{new}{m.group(2)[len(old) :]}"
    return None
