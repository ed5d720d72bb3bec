"""The BLIP-2 model classes, by task: stage 2 (image -> Q-Former -> LLM: captions, answers) in
``conditional_generation``, stage 1 (image -> Q-Former with its heads: retrieval, features) in ``stage1``, what they
share in ``base``."""

from .base import Blip2ModelBase, Blip2Output, token_cross_entropy, tokenize
from .conditional_generation import Blip2ForConditionalGeneration
from .stage1 import Blip2Qformer

__all__ = [
    "Blip2ForConditionalGeneration",
    "Blip2ModelBase",
    "Blip2Output",
    "Blip2Qformer",
    "token_cross_entropy",
    "tokenize",
]
