"""PaddleMIX layout: the LAVIS names with the whole bridge under ``Qformer.`` (``Qformer.ln_vision``,
``Qformer.query_tokens``, ``Qformer.bert.*``, ``Qformer.cls.*``, ``Qformer.vision_proj``, ...) and paddle
Linear weights ([in, out]); ``temp`` ([1]) sits on the model, outside the Q-Former. Its stage-2
``Qformer.language_projection`` is not the Q-Former's: it passes through.

A bridge file alone (``bridge_name_or_path``; PaddleMIX's ``load_model`` sets it into the Q-Former module and
``merge_weight.py`` adds the prefix) has the same keys without ``Qformer.``.
"""

from __future__ import annotations

from .lavis import rename_bridge_key

TORCH_LINEAR = False


def matches(keys: set[str]) -> bool:
    whole = "Qformer.query_tokens" in keys or "Qformer.ln_vision.weight" in keys
    # LAVIS and HF never ship the BERT part without a prefix (Qformer.bert., qformer.)
    bare_bridge = any(k.startswith("bert.encoder.layer.") for k in keys)
    return whole or bare_bridge


def rename(key: str) -> str | None:
    return rename_bridge_key(key.removeprefix("Qformer."))
