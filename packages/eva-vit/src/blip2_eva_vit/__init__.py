"""EVA-ViT-g image encoder for PaddlePaddle, as used by BLIP-2."""

from ._threads import use_all_cores
from .config import EvaVitConfig
from .convert import LoadReport, convert_state_dict, detect_layout, load_pretrained, to_hf_state_dict
from .model import EvaVisionTransformer, EvaVitOutput, LayerNormFp32, resize_position_embedding

use_all_cores()

__all__ = [
    "EvaVisionTransformer",
    "EvaVitConfig",
    "EvaVitOutput",
    "LayerNormFp32",
    "LoadReport",
    "convert_state_dict",
    "detect_layout",
    "load_pretrained",
    "resize_position_embedding",
    "to_hf_state_dict",
]
