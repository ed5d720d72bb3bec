"""Configuration of the Q-Former."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from blip2_encoder_common import config_from_dict


@dataclass
class QFormerConfig:
    """A BERT-base encoder with learned queries that cross-attend to image features.

    Defaults are BLIP-2's: 12 layers of 768, cross-attention in every 2nd layer (0, 2, ..., 10) to
    1408-wide EVA-ViT-g features, 32 queries, BERT's vocabulary plus the ``[DEC]`` token (30523).
    ``has_text_input=False`` builds the stage-2 Q-Former, which has no word embeddings and no text FFNs.
    """

    vocab_size: int = 30523
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    max_position_embeddings: int = 512
    layer_norm_eps: float = 1e-12
    cross_attention_freq: int = 2
    encoder_hidden_size: int = 1408
    # LAVIS's ln_vision is torch's default LayerNorm (1e-5); HF converted it with 1e-6.
    vision_layer_norm_eps: float = 1e-5
    num_query_tokens: int = 32
    embed_dim: int = 256
    pad_token_id: int = 0
    bos_token_id: int = 30522
    has_text_input: bool = True
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.has_text_input and not 0 <= self.bos_token_id < self.vocab_size:
            raise ValueError(f"bos_token_id {self.bos_token_id} ([DEC]) is not in the vocabulary of {self.vocab_size}")
        if self.cross_attention_freq < 1:
            raise ValueError(f"cross_attention_freq must be >= 1, got {self.cross_attention_freq}")

    def has_cross_attention(self, layer_index: int) -> bool:
        return layer_index % self.cross_attention_freq == 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> QFormerConfig:
        """Build from our own keys; unknown keys are an error, so a typo is not silently dropped."""
        return config_from_dict(cls, values)
