"""LAVIS layout of whole BLIP-2 checkpoints (``blip2_*.pth``; the ``model`` entry of the saved dict).

``visual_encoder.*``, ``ln_vision``, ``query_tokens``, ``Qformer.*``, ``vision_proj``/``text_proj``/
``itm_head``/``temp`` (stage 1), ``opt_proj``/``t5_proj`` and ``opt_model.*``/``t5_model.*`` (stage 2, HF
names); LAVIS's later models (``blip2_vicuna_instruct``) name them ``llm_proj`` and ``llm_model.*``, whose type the
config says. LAVIS saves only what it trains: a stage-2 file usually lacks the frozen ViT and LLM, which come from
``eva_vit_g.pth`` (the encoder's keys alone, no prefix) and the LLM's own checkpoint.
"""

from __future__ import annotations

import numpy as np

from blip2_eva_vit import convert_state_dict as convert_vision
from blip2_qformer import convert_state_dict as convert_bridge
from blip2_qformer.formats import lavis as bridge_layout

from .hf import llm_from_hf

_LLM_PREFIXES = {"opt_model.": "opt", "t5_model.": "t5", "llm_model.": None}  # None: the config's LLM type
_PROJECTIONS = ("opt_proj.", "t5_proj.", "llm_proj.")


def matches(state_dict: dict) -> bool:
    return bridge_layout.matches(set(state_dict))


def convert(sd: dict[str, np.ndarray], vision_heads: int, llm_type: str | None) -> dict[str, np.ndarray]:
    vision = {k[len("visual_encoder.") :]: v for k, v in sd.items() if k.startswith("visual_encoder.")}
    out = (
        {"vision_model." + k: v for k, v in convert_vision(vision, "lavis", num_heads=vision_heads).items()}
        if vision
        else {}
    )
    rest = {k: v for k, v in sd.items() if not k.startswith("visual_encoder.")}
    for prefix, model_type in _LLM_PREFIXES.items():
        llm = {k[len(prefix) :]: v for k, v in rest.items() if k.startswith(prefix)}
        if llm:
            model_type = model_type or llm_type
            if model_type is None:
                raise ValueError(f"the checkpoint has {prefix}* weights but the config names no text model")
            out.update({"language_model." + k: v for k, v in llm_from_hf(llm, model_type).items()})
    rest = {k: v for k, v in rest.items() if not k.startswith(tuple(_LLM_PREFIXES))}
    for key, value in convert_bridge(rest, "lavis").items():
        if key.startswith(_PROJECTIONS):
            name = "language_projection." + key.split(".", 1)[1]
            out[name] = value.T if name.endswith("weight") else value
        else:
            out[key] = value
    return out
