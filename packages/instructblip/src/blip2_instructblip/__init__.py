"""InstructBLIP for PaddlePaddle, composed from the BLIP-2 packages: EVA-ViT-g (blip2-eva-vit), the Q-Former with
the instruction beside its queries (blip2-qformer), the LLM bridge, loading and decoding (blip2-core).

Heavy modules (paddle, paddlenlp) load on first use of the model class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from blip2_core.lazy_names import lazy_getattr

__all__ = ["CAPTION_PROMPT", "InstructBlipConfig", "InstructBlipForConditionalGeneration", "VQA_PROMPT", "instruction"]

_LAZY = {
    "CAPTION_PROMPT": ".prompts",
    "InstructBlipConfig": ".config",
    "InstructBlipForConditionalGeneration": ".model",
    "VQA_PROMPT": ".prompts",
    "instruction": ".prompts",
}

if TYPE_CHECKING:
    from .config import InstructBlipConfig
    from .model import InstructBlipForConditionalGeneration
    from .prompts import CAPTION_PROMPT, VQA_PROMPT, instruction

__getattr__ = lazy_getattr(__name__, _LAZY)
