"""BLIP-2 for PaddlePaddle: EVA-ViT + Q-Former (+ OPT / FlanT5) by name or path, in any checkpoint layout.

Heavy modules (paddle, paddlenlp) load on first use of a model class, so ``blip2-predict --help`` and the
name table stay quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy_names import lazy_getattr

__all__ = [
    "Blip2Config",
    "Blip2ForConditionalGeneration",
    "Blip2Qformer",
    "GenerationConfig",
    "read_state_dict",
    "write_safetensors",
]

_LAZY = {
    "Blip2Config": ".model.config",
    "Blip2ForConditionalGeneration": ".model.modeling",
    "Blip2Qformer": ".model.modeling",
    "GenerationConfig": ".model.generation",
    "read_state_dict": ".checkpoint_io",
    "write_safetensors": ".checkpoint_io",
}

if TYPE_CHECKING:
    from .checkpoint_io import read_state_dict, write_safetensors
    from .model.config import Blip2Config
    from .model.generation import GenerationConfig
    from .model.modeling import Blip2ForConditionalGeneration, Blip2Qformer


__getattr__ = lazy_getattr(__name__, _LAZY)
