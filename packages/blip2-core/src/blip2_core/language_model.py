"""The frozen LLM of BLIP-2: paddlenlp's OPT or T5 behind the few calls BLIP-2 makes.

The text config is kept in HF's form (what ``Salesforce/blip2-*`` config.json files carry), so one
config describes the LLM whichever framework runs it.
"""

from __future__ import annotations

import functools
from typing import Any

import paddle
from paddle import nn

Cache = Any  # paddlenlp's per-layer caches (namedtuples / tuples of [batch, heads, length, head_dim] tensors)


def _opt_config(text: dict[str, Any]):
    from paddlenlp.transformers import OPTConfig

    if text.get("activation_function", "relu") != "relu":
        raise ValueError(f"paddlenlp's OPT supports relu only, not {text['activation_function']!r}")
    if not text.get("do_layer_norm_before", True):
        raise ValueError("post-norm OPT (opt-350m) is not supported by paddlenlp's OPT; BLIP-2 uses 2.7b / 6.7b")
    hidden = text["hidden_size"]
    if text.get("word_embed_proj_dim", hidden) != hidden:
        raise ValueError("OPT with word_embed_proj_dim != hidden_size (opt-350m) is not supported")
    return OPTConfig(
        vocab_size=text["vocab_size"],
        hidden_size=hidden,
        word_embed_proj_dim=hidden,
        num_hidden_layers=text["num_hidden_layers"],
        intermediate_size=text["ffn_dim"],
        num_attention_heads=text["num_attention_heads"],
        max_position_embeddings=text["max_position_embeddings"],
        normalize_before=True,
        hidden_act="relu",
        hidden_dropout_prob=text.get("dropout", 0.1),
        attention_probs_dropout_prob=text.get("attention_dropout", 0.0),
        enable_bias=text.get("enable_bias", True),
        pad_token_id=text.get("pad_token_id", 1),
        bos_token_id=text.get("bos_token_id", 2),
        eos_token_id=text.get("eos_token_id", 2),
    )


def _t5_config(text: dict[str, Any]):
    from paddlenlp.transformers import T5Config

    return T5Config(
        vocab_size=text["vocab_size"],
        d_model=text["d_model"],
        d_kv=text["d_kv"],
        d_ff=text["d_ff"],
        num_layers=text["num_layers"],
        num_decoder_layers=text.get("num_decoder_layers") or text["num_layers"],
        num_heads=text["num_heads"],
        relative_attention_num_buckets=text.get("relative_attention_num_buckets", 32),
        relative_attention_max_distance=text.get("relative_attention_max_distance", 128),
        dropout_rate=text.get("dropout_rate", 0.1),
        layer_norm_epsilon=text.get("layer_norm_epsilon", 1e-6),
        feed_forward_proj=text.get("feed_forward_proj", "gated-gelu"),
        tie_word_embeddings=text.get("tie_word_embeddings", False),
        pad_token_id=text.get("pad_token_id", 0),
        eos_token_id=text.get("eos_token_id", 1),
        bos_token_id=text.get("bos_token_id", 1),
        decoder_start_token_id=text.get("decoder_start_token_id", 0),
    )


# HF's config.json leaves out values equal to the model class's defaults: these are OPTConfig's and T5Config's.
TOKEN_DEFAULTS = {
    "opt": {"pad_token_id": 1, "bos_token_id": 2, "eos_token_id": 2},
    "t5": {"pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0},
}


class LanguageModel(nn.Layer):
    """paddlenlp ``OPTForCausalLM`` (decoder-only) or ``T5ForConditionalGeneration`` (encoder-decoder)."""

    def __init__(self, text_config: dict[str, Any]) -> None:
        super().__init__()
        model_type = text_config.get("model_type")
        text_config = {**TOKEN_DEFAULTS.get(model_type, {}), **{k: v for k, v in text_config.items() if v is not None}}
        self.text_config = text_config
        if model_type == "opt":
            from paddlenlp.transformers import OPTForCausalLM

            self.model = OPTForCausalLM(_opt_config(text_config))
            self.is_decoder_only = True
            self.hidden_size = text_config["hidden_size"]
        elif model_type == "t5":
            from paddlenlp.transformers import T5ForConditionalGeneration

            self.model = T5ForConditionalGeneration(_t5_config(text_config))
            self.is_decoder_only = False
            self.hidden_size = text_config["d_model"]
            if text_config.get("dense_act_fn", "gelu_new") == "gelu":
                self._use_exact_gelu()
            self._use_max_distance(text_config.get("relative_attention_max_distance", 128))
        else:
            raise ValueError(f"unsupported language model type {model_type!r}: BLIP-2 uses 'opt' or 't5'")
        self.vocab_size = text_config["vocab_size"]
        self.pad_token_id = text_config.get("pad_token_id")
        self.bos_token_id = text_config.get("bos_token_id")
        self.eos_token_id = text_config.get("eos_token_id")
        self.decoder_start_token_id = text_config.get("decoder_start_token_id", self.pad_token_id)

    def _use_exact_gelu(self) -> None:
        # paddlenlp's gated-gelu T5 FFN is hard-wired to gelu_new; BLIP-2's FlanT5 uses the exact GELU
        # (LAVIS and HF's conversion both set dense_act_fn="gelu").
        from paddlenlp.transformers.t5.modeling import T5DenseGatedGeluDense

        for layer in self.model.sublayers():
            if isinstance(layer, T5DenseGatedGeluDense):
                layer.gelu_act = nn.GELU()

    def _use_max_distance(self, max_distance: int) -> None:
        # paddlenlp's T5 attention buckets relative positions with the default max_distance (128) whatever
        # the config says; FlanT5 uses 128, other configs must not be silently changed.
        from paddlenlp.transformers.t5.modeling import T5Attention

        for layer in self.model.sublayers():
            if isinstance(layer, T5Attention):
                layer._relative_position_bucket = functools.partial(
                    T5Attention._relative_position_bucket, max_distance=max_distance
                )

    @property
    def input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def embed(self, input_ids: paddle.Tensor) -> paddle.Tensor:
        return self.input_embeddings(input_ids)

    # -- decoder-only ------------------------------------------------------------------------------

    def decoder_step(
        self,
        inputs_embeds: paddle.Tensor,
        attention_mask: paddle.Tensor,
        cache: Cache | None = None,
        use_cache: bool = False,
        last_only: bool = False,
    ) -> tuple[paddle.Tensor, Cache | None]:
        """OPT over ``inputs_embeds`` (after the cached positions); ``attention_mask`` covers cache + inputs.

        ``last_only``: logits of the last position only, all that decoding needs.
        """
        out = self.model.opt(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=cache,
            use_cache=use_cache,
            return_dict=True,
        )
        hidden = out.last_hidden_state[:, -1:] if last_only else out.last_hidden_state
        # paddlenlp's OPT head casts the whole [vocab, hidden] table on every call (a copy even to the same
        # dtype): most of a decoding step on CPU. The same product, without the copy:
        weight = self.model.lm_head.decoder_weight
        logits = paddle.matmul(hidden.astype(weight.dtype), weight, transpose_y=True)
        return logits, (out.past_key_values if use_cache else None)

    # -- encoder-decoder ---------------------------------------------------------------------------

    def encode(self, inputs_embeds: paddle.Tensor, attention_mask: paddle.Tensor) -> paddle.Tensor:
        out = self.model.t5.encoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask, return_dict=True)
        return out.last_hidden_state

    def decode(
        self,
        decoder_input_ids: paddle.Tensor,
        encoder_hidden: paddle.Tensor,
        encoder_mask: paddle.Tensor,
        cache: Cache | None = None,
        use_cache: bool = False,
    ) -> tuple[paddle.Tensor, Cache | None]:
        """Decoder logits; with ``cache`` only the last decoder token is run."""
        out = self.model(
            encoder_output=(encoder_hidden,),
            attention_mask=encoder_mask,
            decoder_input_ids=decoder_input_ids,
            cache=cache,
            use_cache=use_cache,
            return_dict=True,
        )
        return out.logits, (out.past_key_values if use_cache else None)

    def shift_right(self, labels: paddle.Tensor) -> paddle.Tensor:
        """Decoder inputs for ``labels``: the start token, then the labels but the last (-100 -> pad)."""
        start = paddle.full([labels.shape[0], 1], self.decoder_start_token_id, dtype=labels.dtype)
        shifted = paddle.concat([start, labels[:, :-1]], axis=1)
        return paddle.where(shifted == -100, paddle.full_like(shifted, self.pad_token_id), shifted)


def reorder_cache(cache: Cache, index: paddle.Tensor) -> Cache:
    """Select batch rows ``index`` in every tensor of a (nested) cache: beams follow their parents."""
    if isinstance(cache, paddle.Tensor):
        return paddle.index_select(cache, index, axis=0)
    if isinstance(cache, tuple) and hasattr(cache, "_fields"):  # namedtuple
        return type(cache)(*(reorder_cache(part, index) for part in cache))
    if isinstance(cache, (list, tuple)):
        return type(cache)(reorder_cache(part, index) for part in cache)
    if cache is None:
        return None
    raise TypeError(f"cannot reorder a cache part of type {type(cache).__name__}")
