"""PaddleMIX layout: the LAVIS names with the whole bridge under ``Qformer.`` (``Qformer.ln_vision``,
``Qformer.query_tokens``, ``Qformer.bert.*``, ``Qformer.cls.*``, ``Qformer.vision_proj``, ...) and paddle
Linear weights ([in, out]). Its stage-2 ``Qformer.language_projection`` is not the Q-Former's: it passes through.
"""

from __future__ import annotations

from .lavis import rename_bridge_key

TORCH_LINEAR = False


def matches(keys: set[str]) -> bool:
    return "Qformer.query_tokens" in keys or "Qformer.ln_vision.weight" in keys


def rename(key: str) -> str | None:
    if not key.startswith("Qformer."):
        return None
    return rename_bridge_key(key[len("Qformer.") :])
