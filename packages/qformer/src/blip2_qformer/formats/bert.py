"""A BERT checkpoint (``bert-base-uncased`` in HF's layout) as the starting point of a stage-1 Q-Former.

This is how LAVIS starts BLIP-2 stage 1: the BERT layers (self-attention, text FFN, embeddings, MLM head)
come from BERT; each layer's query FFN starts as a copy of its text FFN; cross-attention, the learned
queries, ``ln_vision`` and the ITC/ITM heads keep their fresh initialisation; the vocabulary grows by the
``[DEC]`` token, whose embedding row and MLM bias stay as initialised (normal / zero, as HF's
``resize_token_embeddings`` does).

Accepted key spellings: ``BertForPreTraining`` / ``BertForMaskedLM`` (``bert.`` prefix, ``cls.predictions``)
and ``BertModel`` (no prefix, no MLM head); old TF-converted names ``LayerNorm.gamma`` / ``.beta``.
Torch Linear weights ([out, in]) are transposed to paddle's [in, out].
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import paddle

from blip2_encoder_common import in_dtype

from ..pretraining import QFormerForPretraining
from .lavis import rename_bridge_key

# Parts of BERT that the Q-Former has no place for.
_UNUSED = re.compile(
    r"(^|\.)position_ids$|token_type_embeddings|^bert\.pooler\.|^cls\.seq_relationship\.|cls\.predictions\.decoder\."
)
_NOT_LINEAR = re.compile(r"(embeddings\.|layer_norm\.)")
_FFN = re.compile(r"^qformer\.layers\.(\d+)\.ffn\.(.*)$")
_LAYER = re.compile(r"^qformer\.layers\.(\d+)\.")
_GROWS_WITH_VOCAB = ("qformer.embeddings.word_embeddings.weight", "lm_head.bias")


@dataclass
class BertInitReport:
    """``loaded``: our parameter names set from BERT; ``fresh``: those left as initialised (cross-attention,
    queries, heads); ``unused``: BERT keys with no place here (pooler, NSP head, extra layers)."""

    loaded: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)


def _bert_key(key: str) -> str:
    """One spelling for every BERT variant: ``bert.``-prefixed, LayerNorm ``weight``/``bias``."""
    key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
    key = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)
    if key.startswith(("embeddings.", "encoder.", "pooler.")):
        key = "bert." + key
    return key


def bert_to_qformer(state_dict: dict[str, Any], num_layers: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """BERT weights under the Q-Former's names (paddle shapes), query FFNs copied from the text FFNs.

    Returns ``(weights, unused_keys)``; layers at or beyond ``num_layers`` count as unused.
    """
    weights: dict[str, np.ndarray] = {}
    unused: list[str] = []
    for original, value in state_dict.items():
        key = _bert_key(original)
        name = None if _UNUSED.search(key) else rename_bridge_key(key)
        layer = _LAYER.match(name) if name else None
        if name is None or (layer and int(layer.group(1)) >= num_layers):
            unused.append(original)
            continue
        value = in_dtype(np.asarray(value), "float32")
        if name.endswith(".weight") and value.ndim == 2 and not _NOT_LINEAR.search(name):
            value = value.T
        weights[name] = value
    for name, value in list(weights.items()):
        ffn = _FFN.match(name)
        if ffn:  # LAVIS: the query FFN starts as a copy of the text FFN
            weights[f"qformer.layers.{ffn.group(1)}.query_ffn.{ffn.group(2)}"] = value.copy()
    return weights, unused


def init_from_bert(model: QFormerForPretraining, state_dict: dict[str, Any]) -> BertInitReport:
    """Set ``model``'s BERT parts from a BERT checkpoint's ``state_dict`` (see the module docstring).

    The checkpoint must have the model's width and at least its number of layers; its vocabulary may be
    smaller (BERT's 30522 tokens for the Q-Former's 30523 with ``[DEC]``). Any other mismatch is an error
    naming the key and both shapes.
    """
    weights, unused = bert_to_qformer(state_dict, model.qformer.config.num_layers)
    params = model.state_dict()
    report = BertInitReport(unused=unused)
    for name, value in weights.items():
        if name not in params:
            report.unused.append(name)
            continue
        target = params[name]
        shape = tuple(target.shape)
        if name in _GROWS_WITH_VOCAB and value.shape[0] < shape[0] and value.shape[1:] == shape[1:]:
            grown = target.numpy().astype(np.float32)  # new rows ([DEC]) keep their initialisation
            grown[: value.shape[0]] = value
            value = grown
        if tuple(value.shape) != shape:
            raise ValueError(f"BERT checkpoint: shape mismatch for {name}: checkpoint {value.shape} vs model {shape}")
        target.set_value(paddle.to_tensor(value).astype(target.dtype))
        report.loaded.append(name)
    report.fresh = sorted(set(params) - set(report.loaded))
    if not any(name.startswith("qformer.layers.") for name in report.loaded):
        raise ValueError("the checkpoint has no BERT encoder layers (bert.encoder.layer.*): is it a BERT checkpoint?")
    return report


__all__ = ["BertInitReport", "bert_to_qformer", "init_from_bert"]
