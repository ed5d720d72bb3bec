"""The BLIP-2 Q-Former and its stage-1 heads for PaddlePaddle; usable on any image features."""

from blip2_encoder_common import LayerNormFp32, LoadReport, assign_weights, use_all_cores

from .config import QFormerConfig
from .distributed import all_gather_with_grad, concat_all_gather, global_token_mean, rank_and_world_size
from .formats import convert_state_dict, detect_layout
from .loading import load_pretrained
from .model import QFormer, QFormerOutput, padding_mask, prefix_causal_mask
from .pretraining import FeatureOutput, PretrainingOutput, QFormerForPretraining, sample_hard_negatives

__all__ = [
    "FeatureOutput",
    "LayerNormFp32",
    "LoadReport",
    "assign_weights",
    "PretrainingOutput",
    "QFormer",
    "QFormerConfig",
    "QFormerForPretraining",
    "QFormerOutput",
    "all_gather_with_grad",
    "concat_all_gather",
    "convert_state_dict",
    "detect_layout",
    "global_token_mean",
    "load_pretrained",
    "padding_mask",
    "prefix_causal_mask",
    "rank_and_world_size",
    "sample_hard_negatives",
    "use_all_cores",
]
