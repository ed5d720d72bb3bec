"""EVA-ViT-g image encoder for PaddlePaddle, as used by BLIP-2."""

from ._threads import use_all_cores
from .config import EvaVitConfig
from .formats import convert_state_dict, detect_layout, to_hf_state_dict
from .loading import LoadReport, fit_to_config, load_pretrained
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
    "fit_to_config",
    "load_pretrained",
    "resize_position_embedding",
    "to_hf_state_dict",
]
