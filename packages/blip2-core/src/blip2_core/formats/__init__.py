"""Whole-checkpoint layouts of BLIP-2, one module each: ``hf``, ``lavis``, ``paddlemix`` (and ours, ``native``).

Each maps a full state dict to the names of our models: ``vision_model.*`` (blip2-eva-vit), ``qformer.*``
and the stage-1 heads (blip2-qformer), ``language_projection.*`` and ``language_model.model.*`` (paddlenlp).
The encoders' own key names are mapped by their packages; these modules only route the parts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from blip2_eva_vit import detect_layout as detect_vision_layout

from . import hf, lavis, paddlemix

LAYOUTS = ("native", "hf", "lavis", "paddlemix")
_TOP_PREFIXES = ("vision_model.", "visual_encoder.", "qformer.", "Qformer.", "query_tokens", "language_", "ln_vision")
_FORMATS = {"hf": hf, "lavis": lavis, "paddlemix": paddlemix}
_VISION_PREFIX = "visual_encoder."


def as_full_checkpoint(state_dict: dict[str, Any]) -> dict[str, Any]:
    """A vision encoder's own checkpoint (EVA's ``eva_vit_g.pth``, HF's ``Blip2VisionModel``) under the prefix its
    layout puts it in a whole BLIP-2 checkpoint; anything else as it is."""
    if any(k.startswith(_TOP_PREFIXES) for k in state_dict):
        return state_dict
    try:
        vision_layout = detect_vision_layout(state_dict)
    except ValueError:
        return state_dict
    prefix = "vision_model." if vision_layout == "hf" else _VISION_PREFIX
    return {prefix + k: v for k, v in state_dict.items()}


def detect_layout(state_dict: dict[str, Any]) -> str:
    """The layout of a whole checkpoint, or of one part shipped alone: a bridge (PaddleMIX's keys without
    ``Qformer.``) or a vision encoder (after ``as_full_checkpoint``)."""
    if any(k.startswith(("qformer.layers.", "vision_model.blocks.")) for k in state_dict):
        return "native"
    for name, module in _FORMATS.items():
        if module.matches(state_dict):
            return name
    # No bridge: a vision encoder alone. LAVIS and PaddleMIX both put it under visual_encoder.; the orientation
    # of its Linear weights (torch's or paddle's) tells them apart, as blip2-eva-vit's detection does.
    vision = {k[len(_VISION_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(_VISION_PREFIX)}
    if vision:
        try:
            vision_layout = detect_vision_layout(vision)
        except ValueError:
            vision_layout = None
        if vision_layout in ("lavis", "paddlemix"):
            return vision_layout
    raise ValueError(
        "cannot tell the checkpoint layout: expected HF (vision_model., qformer.encoder.), LAVIS (visual_encoder., "
        "Qformer.bert.) or PaddleMIX (Qformer.query_tokens, or bert.encoder. in a bridge alone) keys, or a vision "
        "encoder alone"
    )


def convert_state_dict(
    state_dict: dict[str, Any], layout: str | None = None, *, num_heads: int, llm_type: str | None
) -> dict[str, np.ndarray]:
    """Map a whole BLIP-2 checkpoint (or a part of one) of any known layout to our names and shapes.

    The same call in every package: (state dict, layout), then what the layout needs as keywords: the vision
    encoder's number of heads (fused qkv weights are split by it) and the LLM's type ("opt", "t5" or None).
    """
    sd = as_full_checkpoint({k: np.asarray(v) for k, v in state_dict.items()})
    layout = layout or detect_layout(sd)
    if layout == "native":
        return sd
    if layout not in _FORMATS:
        raise ValueError(f"unknown checkpoint layout {layout!r}; expected one of {LAYOUTS}")
    return _FORMATS[layout].convert(sd, num_heads, llm_type)


__all__ = ["LAYOUTS", "as_full_checkpoint", "convert_state_dict", "detect_layout"]
