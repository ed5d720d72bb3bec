"""Checkpoint layouts of the Q-Former and its stage-1 heads, one module each, mapped to our names.

Keys are those of a full BLIP-2 checkpoint; the result uses ``QFormerForPretraining``'s names
(``qformer.*`` and the heads). Keys of other parts (vision encoder, language model, the projection to
it) pass through unchanged for the caller; a few that no model uses are dropped (``_IGNORED``).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from . import hf, lavis, paddlemix

LAYOUTS = ("native", "hf", "lavis", "paddlemix")
_FORMATS = {"hf": hf, "lavis": lavis, "paddlemix": paddlemix}
# Position-id buffers, BERT token types (PaddleMIX), the LM decoder (tied to the word embeddings) and
# its bias (a copy of lm_head.bias).
_IGNORED = re.compile(r"(^|\.)position_ids$|token_type_embeddings\.weight$|cls\.predictions\.decoder\.(weight|bias)$")
_NOT_LINEAR = re.compile(r"(embeddings\.|layer_norm\.|ln_vision\.|query_tokens$|temp$|lm_head\.bias$)")


def detect_layout(state_dict: dict[str, Any]) -> str:
    """Guess the layout of a (full or bridge-only) BLIP-2 state dict."""
    keys = set(state_dict)
    if any(k.startswith("qformer.layers.") for k in keys):
        return "native"
    for name, module in _FORMATS.items():
        if module.matches(keys):
            return name
    raise ValueError(
        "cannot tell the Q-Former checkpoint layout: no qformer.encoder, Qformer.bert, bert.encoder (a PaddleMIX "
        "bridge alone) or qformer.layers keys"
    )


def convert_state_dict(state_dict: dict[str, Any], layout: str | None = None) -> dict[str, np.ndarray]:
    """Map a BLIP-2 state dict of any known layout (detected when None) to ``QFormerForPretraining`` names.

    The same call in every package: (state dict, layout), then what the layout needs as keywords (nothing here).
    """
    sd = {k: np.asarray(v) for k, v in state_dict.items()}
    layout = layout or detect_layout(sd)
    if layout == "native":
        return sd
    if layout not in _FORMATS:
        raise ValueError(f"unknown Q-Former checkpoint layout {layout!r}; expected one of {LAYOUTS}")
    module = _FORMATS[layout]
    out: dict[str, np.ndarray] = {}
    for key, value in sd.items():
        name = module.rename(key)
        if name is None:
            if not _IGNORED.search(key):
                out[key] = value
            continue
        if module.TORCH_LINEAR and name.endswith(".weight") and value.ndim == 2 and not _NOT_LINEAR.search(name):
            value = value.T
        out[name] = value
    return out


__all__ = ["LAYOUTS", "convert_state_dict", "detect_layout"]
