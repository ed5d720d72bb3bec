"""``TextConfig``: the frozen LLM's config, as the fields of HF's ``OPTConfig`` / ``T5Config`` / ``LlamaConfig`` that
BLIP-2 and the models built on the same parts (InstructBLIP's Vicuna) read.

HF's config.json leaves out values equal to the model class's defaults, so the defaults below are HF's; they
live here and nowhere else. Keys we do not read are kept in ``extra`` so that a saved config.json still
carries them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

MODEL_TYPES = ("opt", "t5", "llama")
# Token ids HF's OPTConfig and T5Config fill in when config.json leaves them out.
_TOKEN_DEFAULTS = {
    "opt": {"pad_token_id": 1, "bos_token_id": 2, "eos_token_id": 2, "decoder_start_token_id": None},
    "t5": {"pad_token_id": 0, "bos_token_id": None, "eos_token_id": 1, "decoder_start_token_id": 0},
    "llama": {"pad_token_id": None, "bos_token_id": 1, "eos_token_id": 2, "decoder_start_token_id": None},
}
_REQUIRED = {
    "opt": ("hidden_size", "num_hidden_layers", "ffn_dim", "num_attention_heads", "max_position_embeddings"),
    "t5": ("d_model", "d_kv", "d_ff", "num_layers", "num_heads"),
    "llama": ("hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads"),
}


@dataclass
class TextConfig:
    """An OPT or LLaMA (decoder-only) or T5 (encoder-decoder) language model; ``model_type`` says which."""

    model_type: str
    vocab_size: int
    # OPT (and LLaMA: hidden_size, num_hidden_layers, num_attention_heads, max_position_embeddings)
    hidden_size: int | None = None
    num_hidden_layers: int | None = None
    ffn_dim: int | None = None
    num_attention_heads: int | None = None
    max_position_embeddings: int | None = None
    activation_function: str = "relu"
    do_layer_norm_before: bool = True
    word_embed_proj_dim: int | None = None
    dropout: float = 0.1
    attention_dropout: float = 0.0
    enable_bias: bool = True
    # LLaMA (Vicuna)
    intermediate_size: int | None = None
    num_key_value_heads: int | None = None
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    hidden_act: str = "silu"
    # T5
    d_model: int | None = None
    d_kv: int | None = None
    d_ff: int | None = None
    num_layers: int | None = None
    num_decoder_layers: int | None = None
    num_heads: int | None = None
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "gated-gelu"
    dense_act_fn: str | None = None  # BLIP-2's FlanT5 sets "gelu"; unset means paddlenlp's gelu_new
    tie_word_embeddings: bool = False  # T5 and LLaMA
    # tokens (None: the model type's default, filled in by __post_init__)
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    decoder_start_token_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"unsupported language model type {self.model_type!r}: one of {MODEL_TYPES}")
        for name, default in _TOKEN_DEFAULTS[self.model_type].items():
            if getattr(self, name) is None:
                setattr(self, name, default)
        if self.model_type == "llama" and self.max_position_embeddings is None:
            self.max_position_embeddings = 2048  # HF's LlamaConfig default
        missing = [name for name in _REQUIRED[self.model_type] if getattr(self, name) is None]
        if missing:
            raise ValueError(f"the {self.model_type} text_config lacks {', '.join(missing)}")

    @property
    def is_decoder_only(self) -> bool:
        return self.model_type != "t5"

    @property
    def width(self) -> int:
        """The LLM's hidden size, which the language projection maps the Q-Former's outputs to."""
        return self.d_model if self.model_type == "t5" else self.hidden_size

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TextConfig:
        """From HF's text_config dict (null values count as unset); keys we do not read go to ``extra``."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in values.items() if k in names and v is not None}
        extra = {k: v for k, v in values.items() if k not in names}
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """HF's form again (with the fields of the other model types left out)."""
        other = set().union(*(fields for kind, fields in _OWN_FIELDS.items() if kind != self.model_type))
        other -= _OWN_FIELDS[self.model_type]
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in other}
        values.pop("extra")
        return {**self.extra, **{k: v for k, v in values.items() if v is not None}}


_OPT_ONLY = {
    "hidden_size", "num_hidden_layers", "ffn_dim", "num_attention_heads", "max_position_embeddings",
    "activation_function", "do_layer_norm_before", "word_embed_proj_dim", "dropout", "attention_dropout",
    "enable_bias",
}  # fmt: skip
_T5_ONLY = {
    "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads", "relative_attention_num_buckets",
    "relative_attention_max_distance", "dropout_rate", "layer_norm_epsilon", "feed_forward_proj", "dense_act_fn",
    "tie_word_embeddings",
}  # fmt: skip
_LLAMA = {
    "hidden_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings", "intermediate_size",
    "num_key_value_heads", "rms_norm_eps", "rope_theta", "hidden_act", "tie_word_embeddings",
}  # fmt: skip
# each type's own fields: to_dict leaves out those only other types have
_OWN_FIELDS = {"opt": _OPT_ONLY, "t5": _T5_ONLY, "llama": _LLAMA}
