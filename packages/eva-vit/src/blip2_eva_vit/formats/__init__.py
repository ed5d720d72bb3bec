"""Checkpoint layouts of the vision encoder, one module each, mapped to our parameter names.

- ``hf``: HF transformers ``Blip2VisionModel`` (``vision_model.`` removed);
- ``lavis``: LAVIS / EVA-CLIP (``visual_encoder.`` removed);
- ``paddlemix``: PaddleMIX (``visual_encoder.`` removed);
- ``native``: ours.

Arrays are numpy, so reading a checkpoint needs no framework. Keys that belong to no known parameter
pass through unchanged, for the loader to report.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import hf, lavis, paddlemix

LAYOUTS = ("native", "hf", "lavis", "paddlemix")
_CONVERTERS = {"hf": hf.from_hf, "lavis": lavis.from_lavis, "paddlemix": paddlemix.from_paddlemix}


def detect_layout(state_dict: dict[str, Any]) -> str:
    """Guess the layout of a vision-encoder state dict (outer prefix already removed)."""
    if "blocks.0.attn.q_weight" in state_dict:
        return "native"
    for name, module in (("hf", hf), ("lavis", lavis), ("paddlemix", paddlemix)):
        if module.matches(state_dict):
            return name
    raise ValueError("cannot tell the vision checkpoint layout: no class embedding, cls token or qkv weight found")


def convert_state_dict(
    state_dict: dict[str, Any], layout: str | None = None, *, num_heads: int
) -> dict[str, np.ndarray]:
    """Map a vision-encoder state dict of any known layout (detected when None) to our names and shapes.

    The same call in every package: (state dict, layout), then what the layout needs as keywords; here the
    number of heads, by which fused qkv weights are split.
    """
    sd = {k: np.asarray(v) for k, v in state_dict.items()}
    layout = layout or detect_layout(sd)
    if layout == "native":
        return sd
    if layout not in _CONVERTERS:
        raise ValueError(f"unknown vision checkpoint layout {layout!r}; expected one of {LAYOUTS}")
    return _CONVERTERS[layout](sd, num_heads)


to_hf_state_dict = hf.to_hf

__all__ = ["LAYOUTS", "convert_state_dict", "detect_layout", "to_hf_state_dict"]
