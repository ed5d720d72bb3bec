"""EVA-ViT-g image encoder for PaddlePaddle, as used by BLIP-2."""

from blip2_encoder_common import LayerNormFp32, LoadReport, assign_weights, use_all_cores

from .config import EvaVitConfig
from .formats import convert_state_dict, detect_layout, to_hf_state_dict
from .loading import fit_to_config, load_pretrained
from .model import EvaVisionTransformer, EvaVitOutput, cast_floating_point, resize_position_embedding

__all__ = [
    "EvaVisionTransformer",
    "EvaVitConfig",
    "EvaVitOutput",
    "LayerNormFp32",
    "LoadReport",
    "assign_weights",
    "cast_floating_point",
    "convert_state_dict",
    "detect_layout",
    "fit_to_config",
    "load_pretrained",
    "resize_position_embedding",
    "to_hf_state_dict",
    "use_all_cores",
]
