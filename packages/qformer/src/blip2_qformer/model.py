"""The BLIP-2 Q-Former: a BERT encoder whose learned queries cross-attend to image features."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import paddle
import paddle.nn.functional as F
from paddle import nn

from blip2_encoder_common import LayerNormFp32

from .config import QFormerConfig

# BERT's additive mask value, kept for bit-level agreement with LAVIS and HF.
MASK_VALUE = -10000.0

KeyValue = tuple[paddle.Tensor, paddle.Tensor]


@dataclass
class QFormerOutput:
    """``last_hidden_state``: [batch, positions, hidden]; queries first when they were run.

    ``past_key_values``: per layer, the self-attention keys and values [batch, heads, positions, head_dim],
    returned with ``use_cache=True`` so a later text pass can attend to these positions.
    """

    last_hidden_state: paddle.Tensor
    past_key_values: tuple[KeyValue, ...] | None = None
    hidden_states: tuple[paddle.Tensor, ...] | None = None


class QFormerEmbeddings(nn.Layer):
    """LayerNorm(concat(queries, word + position embeddings)); queries get no position embedding."""

    def __init__(self, config: QFormerConfig) -> None:
        super().__init__()
        if config.has_text_input:
            self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
            self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.layer_norm = LayerNormFp32(config.hidden_size, epsilon=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.has_text_input = config.has_text_input

    def forward(
        self,
        input_ids: paddle.Tensor | None = None,
        query_embeds: paddle.Tensor | None = None,
        position_offset: int = 0,
    ) -> paddle.Tensor:
        parts = []
        if query_embeds is not None:
            parts.append(query_embeds)
        if input_ids is not None:
            if not self.has_text_input:
                raise ValueError("this Q-Former has no word embeddings (a stage-2 checkpoint); it takes no text")
            positions = paddle.arange(position_offset, position_offset + input_ids.shape[1])
            text = self.word_embeddings(input_ids) + self.position_embeddings(positions).unsqueeze(0)
            parts.append(text.astype(parts[0].dtype) if parts else text)
        if not parts:
            raise ValueError("the Q-Former needs queries, input_ids or both")
        embeddings = paddle.concat(parts, axis=1) if len(parts) > 1 else parts[0]
        return self.dropout(self.layer_norm(embeddings))


class QFormerAttention(nn.Layer):
    """BERT attention block: multi-head attention, output projection, dropout, residual, post-LayerNorm.

    As cross-attention, keys and values come from the image features (``kv_size`` wide).
    """

    def __init__(self, config: QFormerConfig, kv_size: int | None = None) -> None:
        super().__init__()
        hidden = config.hidden_size
        kv_size = kv_size or hidden
        self.num_heads = config.num_heads
        self.head_dim = hidden // config.num_heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(kv_size, hidden)
        self.value = nn.Linear(kv_size, hidden)
        self.output = nn.Linear(hidden, hidden)
        self.layer_norm = LayerNormFp32(hidden, epsilon=config.layer_norm_eps)
        self.attention_dropout = nn.Dropout(config.attention_dropout)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def _heads(self, x: paddle.Tensor) -> paddle.Tensor:
        batch, length, _ = x.shape
        return x.reshape([batch, length, self.num_heads, self.head_dim]).transpose([0, 2, 1, 3])

    def forward(
        self,
        hidden_states: paddle.Tensor,
        mask: paddle.Tensor | None = None,
        context: paddle.Tensor | None = None,
        past_key_value: KeyValue | None = None,
    ) -> tuple[paddle.Tensor, KeyValue]:
        """``mask`` is additive, broadcastable to [batch, heads, queries, keys]."""
        source = hidden_states if context is None else context
        key = self._heads(self.key(source))
        value = self._heads(self.value(source))
        if past_key_value is not None:
            key = paddle.concat([past_key_value[0], key], axis=2)
            value = paddle.concat([past_key_value[1], value], axis=2)
        query = self._heads(self.query(hidden_states))
        scores = paddle.matmul(query, key, transpose_y=True) * (self.head_dim**-0.5)
        if mask is not None:
            scores = scores + mask.astype(scores.dtype)
        probs = self.attention_dropout(F.softmax(scores, axis=-1))
        context_layer = paddle.matmul(probs, value).transpose([0, 2, 1, 3])
        context_layer = context_layer.reshape([hidden_states.shape[0], hidden_states.shape[1], -1])
        out = self.layer_norm(self.dropout(self.output(context_layer)) + hidden_states)
        return out, (key, value)


class FeedForward(nn.Layer):
    """BERT FFN: fc1, GELU, fc2, dropout, residual, post-LayerNorm."""

    def __init__(self, config: QFormerConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.layer_norm = LayerNormFp32(config.hidden_size, epsilon=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.layer_norm(self.dropout(self.fc2(F.gelu(self.fc1(x)))) + x)


class QFormerLayer(nn.Layer):
    """Self-attention over all positions; cross-attention and a separate FFN for the query positions."""

    def __init__(self, config: QFormerConfig, layer_index: int) -> None:
        super().__init__()
        self.attention = QFormerAttention(config)
        self.has_cross_attention = config.has_cross_attention(layer_index)
        if self.has_cross_attention:
            self.crossattention = QFormerAttention(config, kv_size=config.encoder_hidden_size)
        self.query_ffn = FeedForward(config)
        if config.has_text_input:
            self.ffn = FeedForward(config)

    def forward(
        self,
        hidden_states: paddle.Tensor,
        self_mask: paddle.Tensor | None,
        query_length: int,
        image_embeds: paddle.Tensor | None = None,
        image_mask: paddle.Tensor | None = None,
        past_key_value: KeyValue | None = None,
    ) -> tuple[paddle.Tensor, KeyValue]:
        attended, present = self.attention(hidden_states, self_mask, past_key_value=past_key_value)
        outputs = []
        if query_length > 0:
            queries = attended[:, :query_length]
            if self.has_cross_attention:
                if image_embeds is None:
                    raise ValueError("queries need image_embeds: this layer cross-attends to the image")
                queries, _ = self.crossattention(queries, image_mask, context=image_embeds)
            outputs.append(self.query_ffn(queries))
        if attended.shape[1] > query_length:
            if not hasattr(self, "ffn"):
                raise ValueError("this Q-Former has no text FFN (a stage-2 checkpoint); it takes no text")
            outputs.append(self.ffn(attended[:, query_length:]))
        return (paddle.concat(outputs, axis=1) if len(outputs) > 1 else outputs[0]), present


def padding_mask(attention_mask: paddle.Tensor) -> paddle.Tensor:
    """[batch, keys] of 1 (attend) / 0 (padding) -> additive [batch, 1, 1, keys]."""
    return (1.0 - attention_mask.astype(paddle.float32))[:, None, None, :] * MASK_VALUE


def prefix_causal_mask(attention_mask: paddle.Tensor, prefix_length: int) -> paddle.Tensor:
    """Additive [batch, 1, text, prefix + text] mask for text after a fully visible prefix.

    ``attention_mask`` covers prefix + text keys. Text sees the whole prefix (the queries) and the
    text up to itself; this is the UniLM mask of BLIP-2's ITG loss, seen from the text rows (query
    rows never see text, which running the queries first with a cache guarantees).
    """
    total = attention_mask.shape[1]
    text = total - prefix_length
    causal = paddle.tril(paddle.ones([text, text], dtype=paddle.float32))
    allowed = paddle.concat([paddle.ones([text, prefix_length], dtype=paddle.float32), causal], axis=1)
    allowed = allowed[None, None] * attention_mask.astype(paddle.float32)[:, None, None, :]
    return (1.0 - allowed) * MASK_VALUE


class QFormer(nn.Layer):
    """The Q-Former: ``ln_vision`` over image features, learned queries, and the BERT layers.

    Three ways to run it, as BLIP-2 does:
    - queries only, cross-attending to the image (``image_embeds``): the visual tokens;
    - text only (``input_ids``): the unimodal text encoder of ITC;
    - queries and text together, bidirectionally: the multimodal encoder of ITM;
    and, for ITG, text alone with ``past_key_values`` from a queries pass and ``causal=True``.
    """

    def __init__(self, config: QFormerConfig) -> None:
        super().__init__()
        self.config = dataclasses.replace(config)
        self.ln_vision = LayerNormFp32(config.encoder_hidden_size, epsilon=config.vision_layer_norm_eps)
        self.query_tokens = self.create_parameter(
            [1, config.num_query_tokens, config.hidden_size],
            default_initializer=nn.initializer.Normal(std=config.initializer_range),
        )
        self.embeddings = QFormerEmbeddings(config)
        self.layers = nn.LayerList([QFormerLayer(config, i) for i in range(config.num_layers)])
        self.apply(self._init_weights)

    def _init_weights(self, layer: nn.Layer) -> None:
        normal = nn.initializer.Normal(std=self.config.initializer_range)
        if isinstance(layer, (nn.Linear, nn.Embedding)):
            normal(layer.weight)
        if isinstance(layer, nn.Linear) and layer.bias is not None:
            nn.initializer.Constant(0.0)(layer.bias)

    def forward(
        self,
        image_embeds: paddle.Tensor | None = None,
        input_ids: paddle.Tensor | None = None,
        attention_mask: paddle.Tensor | None = None,
        use_queries: bool | None = None,
        image_attention_mask: paddle.Tensor | None = None,
        past_key_values: tuple[KeyValue, ...] | None = None,
        causal: bool = False,
        use_cache: bool = False,
        output_hidden_states: bool = False,
        image_embeds_normalized: bool = False,
    ) -> QFormerOutput:
        """Run the Q-Former.

        Args:
            image_embeds: [batch, tokens, encoder_hidden_size] image-encoder output; ``ln_vision`` is
                applied here unless ``image_embeds_normalized``.
            input_ids / attention_mask: [batch, text] token ids and their 1/0 padding mask.
            use_queries: prepend the learned queries (default: whenever ``image_embeds`` is given).
            past_key_values: self-attention keys/values of an earlier pass (the queries) that the
                text attends to; the text is then causal if ``causal``.
        """
        if use_queries is None:
            use_queries = image_embeds is not None and past_key_values is None
        if use_queries and image_embeds is None:
            raise ValueError("the queries need image_embeds to cross-attend to")
        if causal and (use_queries or past_key_values is None):
            raise ValueError("causal=True is for a text pass after a cached queries pass (past_key_values)")

        if image_embeds is not None and not image_embeds_normalized:
            image_embeds = self.ln_vision(image_embeds)
        batch = (input_ids if input_ids is not None else image_embeds).shape[0]
        query_length = self.config.num_query_tokens if use_queries else 0
        past_length = past_key_values[0][0].shape[2] if past_key_values is not None else 0
        # Text positions count from 0 after the queries, as in LAVIS.
        position_offset = max(past_length - self.config.num_query_tokens, 0)

        queries = self.query_tokens.expand([batch, -1, -1]) if use_queries else None
        hidden = self.embeddings(input_ids, queries, position_offset)

        self_mask = None
        if input_ids is not None:
            text_mask = attention_mask if attention_mask is not None else paddle.ones(input_ids.shape, dtype="int64")
            prefix = query_length + past_length
            keys_mask = (
                paddle.concat([paddle.ones([batch, prefix], dtype=text_mask.dtype), text_mask], axis=1)
                if prefix
                else text_mask
            )
            self_mask = prefix_causal_mask(keys_mask, past_length) if causal else padding_mask(keys_mask)
        image_mask = padding_mask(image_attention_mask) if image_attention_mask is not None else None

        presents = [] if use_cache else None
        hidden_states = [hidden] if output_hidden_states else None
        for i, layer in enumerate(self.layers):
            past = past_key_values[i] if past_key_values is not None else None
            hidden, present = layer(hidden, self_mask, query_length, image_embeds, image_mask, past)
            if presents is not None:
                presents.append(present)
            if hidden_states is not None:
                hidden_states.append(hidden)
        return QFormerOutput(
            hidden,
            tuple(presents) if presents is not None else None,
            tuple(hidden_states) if hidden_states is not None else None,
        )
