"""The frozen LLM of BLIP-2: paddlenlp's OPT, LLaMA (Vicuna, as InstructBLIP uses it) or T5 behind the few calls
BLIP-2 makes.

The text config is kept in HF's form (what ``Salesforce/blip2-*`` config.json files carry), so one
config describes the LLM whichever framework runs it.
"""

from __future__ import annotations

import functools
from typing import Any

import paddle
from paddle import nn

from .text_config import TextConfig

Cache = Any  # paddlenlp's per-layer caches (namedtuples / tuples of [batch, heads, length, head_dim] tensors)


def _opt_config(text: TextConfig):
    from paddlenlp.transformers import OPTConfig

    if text.activation_function != "relu":
        raise ValueError(f"paddlenlp's OPT supports relu only, not {text.activation_function!r}")
    if not text.do_layer_norm_before:
        raise ValueError("post-norm OPT (opt-350m) is not supported by paddlenlp's OPT; BLIP-2 uses 2.7b / 6.7b")
    if text.word_embed_proj_dim not in (None, text.hidden_size):
        raise ValueError("OPT with word_embed_proj_dim != hidden_size (opt-350m) is not supported")
    return OPTConfig(
        vocab_size=text.vocab_size,
        hidden_size=text.hidden_size,
        word_embed_proj_dim=text.hidden_size,
        num_hidden_layers=text.num_hidden_layers,
        intermediate_size=text.ffn_dim,
        num_attention_heads=text.num_attention_heads,
        max_position_embeddings=text.max_position_embeddings,
        normalize_before=True,
        hidden_act="relu",
        hidden_dropout_prob=text.dropout,
        attention_probs_dropout_prob=text.attention_dropout,
        enable_bias=text.enable_bias,
        pad_token_id=text.pad_token_id,
        bos_token_id=text.bos_token_id,
        eos_token_id=text.eos_token_id,
    )


def _t5_config(text: TextConfig):
    from paddlenlp.transformers import T5Config

    return T5Config(
        vocab_size=text.vocab_size,
        d_model=text.d_model,
        d_kv=text.d_kv,
        d_ff=text.d_ff,
        num_layers=text.num_layers,
        num_decoder_layers=text.num_decoder_layers or text.num_layers,
        num_heads=text.num_heads,
        relative_attention_num_buckets=text.relative_attention_num_buckets,
        relative_attention_max_distance=text.relative_attention_max_distance,
        dropout_rate=text.dropout_rate,
        layer_norm_epsilon=text.layer_norm_epsilon,
        feed_forward_proj=text.feed_forward_proj,
        tie_word_embeddings=text.tie_word_embeddings,
        pad_token_id=text.pad_token_id,
        eos_token_id=text.eos_token_id,
        bos_token_id=text.bos_token_id if text.bos_token_id is not None else 1,  # paddlenlp's T5Config default
        decoder_start_token_id=text.decoder_start_token_id,
    )


def _llama_config(text: TextConfig):
    from paddlenlp.transformers import LlamaConfig

    if text.hidden_act != "silu":
        raise ValueError(f"paddlenlp's LLaMA supports silu only, not {text.hidden_act!r}")
    if text.extra.get("rope_scaling"):
        raise ValueError(f"LLaMA with rope_scaling {text.extra['rope_scaling']!r} is not supported")
    head_dim = text.extra.get("head_dim")
    if head_dim not in (None, text.hidden_size // text.num_attention_heads):
        raise ValueError(f"LLaMA with head_dim {head_dim} != hidden_size / num_attention_heads is not supported")
    if text.extra.get("attention_bias") or text.extra.get("mlp_bias"):
        raise ValueError("LLaMA with attention or MLP biases is not supported by paddlenlp's LLaMA")
    return LlamaConfig(
        vocab_size=text.vocab_size,
        hidden_size=text.hidden_size,
        intermediate_size=text.intermediate_size,
        num_hidden_layers=text.num_hidden_layers,
        num_attention_heads=text.num_attention_heads,
        num_key_value_heads=text.num_key_value_heads or text.num_attention_heads,
        max_position_embeddings=text.max_position_embeddings,
        rms_norm_eps=text.rms_norm_eps,
        rope_theta=text.rope_theta,
        tie_word_embeddings=text.tie_word_embeddings,
        pad_token_id=text.pad_token_id,
        bos_token_id=text.bos_token_id,
        eos_token_id=text.eos_token_id,
        use_flash_attention=False,  # the plain attention: it takes our padding masks, on any device
    )


def _positions(attention_mask: paddle.Tensor, length: int) -> paddle.Tensor:
    """RoPE positions of the last ``length`` tokens: each row counts its own tokens, so left padding takes none
    (HF's LLaMA generation does the same; rotary attention only sees position differences anyway)."""
    positions = (attention_mask.astype("int64").cumsum(-1) - 1).clip(min=0)
    return positions[:, -length:]


class LanguageModel(nn.Layer):
    """paddlenlp ``OPTForCausalLM`` / ``LlamaForCausalLM`` (decoder-only) or ``T5ForConditionalGeneration``
    (encoder-decoder)."""

    def __init__(self, text_config: TextConfig) -> None:
        super().__init__()
        self.text_config = text_config
        self.is_decoder_only = text_config.is_decoder_only
        self.hidden_size = text_config.width
        self.model_type = text_config.model_type
        if text_config.model_type == "opt":
            from paddlenlp.transformers import OPTForCausalLM

            self.model = OPTForCausalLM(_opt_config(text_config))
        elif text_config.model_type == "llama":
            from paddlenlp.transformers import LlamaForCausalLM

            self.model = LlamaForCausalLM(_llama_config(text_config))
        else:
            from paddlenlp.transformers import T5ForConditionalGeneration

            self.model = T5ForConditionalGeneration(_t5_config(text_config))
            if text_config.dense_act_fn == "gelu":
                self._use_exact_gelu()
            self._use_max_distance(text_config.relative_attention_max_distance)
        self.vocab_size = text_config.vocab_size
        # LLaMA has no padding token: HF's generate then pads finished rows with EOS, and so do we
        self.pad_token_id = (
            text_config.pad_token_id if text_config.pad_token_id is not None else text_config.eos_token_id
        )
        self.bos_token_id = text_config.bos_token_id
        self.eos_token_id = text_config.eos_token_id
        self.decoder_start_token_id = (
            text_config.decoder_start_token_id if text_config.decoder_start_token_id is not None else self.pad_token_id
        )

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
        """OPT / LLaMA over ``inputs_embeds`` (after the cached positions); ``attention_mask`` covers cache + inputs.

        ``last_only``: logits of the last position only, all that decoding needs.
        """
        if self.model_type == "llama":
            return self._llama_step(inputs_embeds, attention_mask, cache, use_cache, last_only)
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

    def _llama_step(
        self,
        inputs_embeds: paddle.Tensor,
        attention_mask: paddle.Tensor,
        cache: Cache | None,
        use_cache: bool,
        last_only: bool,
    ) -> tuple[paddle.Tensor, Cache | None]:
        out = self.model.llama(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=_positions(attention_mask, inputs_embeds.shape[1]),
            past_key_values=cache,
            use_cache=use_cache,
            return_dict=True,
        )
        hidden = out.last_hidden_state[:, -1:] if last_only else out.last_hidden_state
        weight = self.model.lm_head.weight  # [hidden, vocab] (paddle's orientation; HF's is [vocab, hidden])
        logits = paddle.matmul(hidden.astype(weight.dtype), weight, transpose_y=self.model.lm_head.transpose_y)
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
