"""Stage-1 BLIP-2: the Q-Former with its ITC, ITM and ITG heads and losses."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import paddle
import paddle.nn.functional as F
from paddle import nn

from .config import QFormerConfig
from .distributed import all_gather_with_grad, concat_all_gather, global_token_mean, rank_and_world_size
from .model import MASK_VALUE, LayerNormFp32, QFormer, QFormerOutput

LOSSES = ("itc", "itm", "itg")
LABEL_SMOOTHING = 0.1
# The learned temperature is clamped to this range before every forward, as BLIP and ALBEF do. LAVIS's BLIP-2
# never clamps it; we keep the clamp as a guard (a temperature at or below 0 would turn the ITC softmax upside
# down). Inside the range it changes nothing, so it matches LAVIS wherever LAVIS's value stays in the range.
TEMP_RANGE = (0.001, 0.5)


@dataclass
class PretrainingOutput:
    """``loss`` is the sum of the losses asked for; the others are None when not computed."""

    loss: paddle.Tensor
    loss_itc: paddle.Tensor | None = None
    loss_itm: paddle.Tensor | None = None
    loss_itg: paddle.Tensor | None = None


@dataclass
class FeatureOutput:
    """Embeddings of ``extract_features``; the ``*_proj`` ones are L2-normalised in the ITC space."""

    image_embeds: paddle.Tensor | None = None  # [batch, queries, hidden]
    image_embeds_proj: paddle.Tensor | None = None  # [batch, queries, embed_dim]
    text_embeds: paddle.Tensor | None = None  # [batch, text, hidden]
    text_embeds_proj: paddle.Tensor | None = None  # [batch, text, embed_dim]
    multimodal_embeds: paddle.Tensor | None = None  # [batch, queries, hidden]


class LMHead(nn.Layer):
    """BERT's prediction head: dense, GELU, LayerNorm, then the (tied) word embeddings plus a bias."""

    def __init__(self, config: QFormerConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = LayerNormFp32(config.hidden_size, epsilon=config.layer_norm_eps)
        self.bias = self.create_parameter([config.vocab_size], is_bias=True)

    def forward(self, hidden: paddle.Tensor, word_embeddings: paddle.Tensor) -> paddle.Tensor:
        hidden = self.layer_norm(F.gelu(self.dense(hidden)))
        return paddle.matmul(hidden, word_embeddings, transpose_y=True) + self.bias


def smoothed_cross_entropies(logits: paddle.Tensor, targets: paddle.Tensor, smoothing: float) -> paddle.Tensor:
    """Per-row cross-entropy against soft ``targets`` mixed with a uniform distribution (torch's label_smoothing)."""
    targets = (1.0 - smoothing) * targets + smoothing / logits.shape[-1]
    return -(F.log_softmax(logits, axis=-1) * targets).sum(-1)


def smoothed_cross_entropy(logits: paddle.Tensor, targets: paddle.Tensor, smoothing: float) -> paddle.Tensor:
    """The mean of ``smoothed_cross_entropies`` over the rows."""
    return smoothed_cross_entropies(logits, targets, smoothing).mean()


def positives_matrix(batch: int, rank: int, world: int, image_ids: paddle.Tensor | None) -> paddle.Tensor:
    """[batch, batch * world] of 1 where a local sample and a gathered one show the same image.

    Without image ids every sample is its own image: ones on this rank's diagonal block.
    """
    if image_ids is None:
        eye = paddle.eye(batch, dtype=paddle.float32)
        left = paddle.zeros([batch, rank * batch])
        right = paddle.zeros([batch, (world - rank - 1) * batch])
        return paddle.concat([left, eye, right], axis=1)
    ids = image_ids.reshape([-1, 1])
    return (ids == concat_all_gather(ids).reshape([1, -1])).astype(paddle.float32)


@paddle.no_grad()
def sample_hard_negatives(similarity: paddle.Tensor, positives: paddle.Tensor) -> paddle.Tensor:
    """For each row, draw one column from softmax(similarity) with the positives excluded.

    Harder negatives (more similar) are drawn more often; returns [rows] int64 column indices. A row with a
    non-finite similarity (diverged weights) draws uniformly among its negatives instead of failing inside
    ``multinomial``, leaving the non-finite values to a trainer's guard (in the losses, gradients or weights).
    """
    weights = F.softmax(similarity.detach() + positives * MASK_VALUE, axis=1)
    finite = paddle.isfinite(weights).all(axis=1, keepdim=True)
    negatives = 1.0 - positives
    uniform = paddle.where(negatives.sum(1, keepdim=True) > 0, negatives, paddle.ones_like(negatives))
    return paddle.multinomial(paddle.where(finite, weights, uniform), 1).flatten()


class QFormerForPretraining(nn.Layer):
    """BLIP-2 stage 1: image-text contrastive (ITC), matching (ITM) and grounded generation (ITG)."""

    def __init__(self, config: QFormerConfig) -> None:
        super().__init__()
        if not config.has_text_input:
            raise ValueError("stage-1 pretraining needs a Q-Former with text input (has_text_input=True)")
        self.config = dataclasses.replace(config)  # a subclass may put a larger config here: read self.qformer's
        self.qformer = QFormer(config)
        self.vision_proj = nn.Linear(config.hidden_size, config.embed_dim)
        self.text_proj = nn.Linear(config.hidden_size, config.embed_dim)
        self.itm_head = nn.Linear(config.hidden_size, 2)
        self.lm_head = LMHead(config)
        self.temp = self.create_parameter([], default_initializer=nn.initializer.Constant(0.07))

    # -- features -----------------------------------------------------------------------------

    def image_features(self, image_embeds: paddle.Tensor) -> tuple[QFormerOutput, paddle.Tensor]:
        """Queries pass over normalised image features: (output with cache, normalised ITC features)."""
        out = self.qformer(image_embeds, use_cache=True, image_embeds_normalized=True)
        return out, F.normalize(self.vision_proj(out.last_hidden_state), axis=-1)

    def text_features(
        self, input_ids: paddle.Tensor, attention_mask: paddle.Tensor
    ) -> tuple[paddle.Tensor, paddle.Tensor]:
        """Unimodal text pass: (hidden states, normalised ITC feature of the [CLS] position)."""
        hidden = self.qformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return hidden, F.normalize(self.text_proj(hidden[:, 0]), axis=-1)

    def multimodal_features(
        self, image_embeds: paddle.Tensor, input_ids: paddle.Tensor, attention_mask: paddle.Tensor
    ) -> paddle.Tensor:
        """Queries and text together over normalised image features: the query outputs [batch, queries, hidden]."""
        out = self.qformer(
            image_embeds,
            input_ids=input_ids,
            attention_mask=attention_mask,
            use_queries=True,
            image_embeds_normalized=True,
        )
        return out.last_hidden_state[:, : self.qformer.config.num_query_tokens]

    @paddle.no_grad()
    def extract_features(
        self,
        image_embeds: paddle.Tensor | None = None,
        input_ids: paddle.Tensor | None = None,
        attention_mask: paddle.Tensor | None = None,
        mode: str = "multimodal",
    ) -> FeatureOutput:
        """Embeddings for ``mode`` "image", "text" or "multimodal" (raw image-encoder features in)."""
        if mode not in ("image", "text", "multimodal"):
            raise ValueError(f"mode must be 'image', 'text' or 'multimodal', got {mode!r}")
        features = FeatureOutput()
        if mode in ("image", "multimodal"):
            if image_embeds is None:
                raise ValueError(f"mode {mode!r} needs image_embeds")
            image_embeds = self.qformer.ln_vision(image_embeds)
        if mode in ("text", "multimodal") and input_ids is None:
            raise ValueError(f"mode {mode!r} needs input_ids")
        if attention_mask is None and input_ids is not None:
            attention_mask = paddle.ones(input_ids.shape, dtype="int64")
        if mode == "image":
            out, features.image_embeds_proj = self.image_features(image_embeds)
            features.image_embeds = out.last_hidden_state
        elif mode == "text":
            hidden, _ = self.text_features(input_ids, attention_mask)
            features.text_embeds = hidden
            features.text_embeds_proj = F.normalize(self.text_proj(hidden), axis=-1)
        else:
            features.multimodal_embeds = self.multimodal_features(image_embeds, input_ids, attention_mask)
        return features

    # -- scores for retrieval -------------------------------------------------------------------

    @staticmethod
    def itc_similarity(image_feats: paddle.Tensor, text_feats: paddle.Tensor) -> paddle.Tensor:
        """[images, queries, E] x [texts, E] -> [images, texts]: the best-matching query's cosine."""
        return paddle.einsum("iqe,te->itq", image_feats, text_feats).max(-1)

    def itm_logits(
        self, image_embeds: paddle.Tensor, input_ids: paddle.Tensor, attention_mask: paddle.Tensor
    ) -> paddle.Tensor:
        """[batch, 2] match logits (column 1: "matches"), averaged over the query positions.

        ``image_embeds`` are raw image-encoder features, one image per text.
        """
        queries = self.multimodal_features(self.qformer.ln_vision(image_embeds), input_ids, attention_mask)
        return self.itm_head(queries).mean(1)

    # -- losses ---------------------------------------------------------------------------------

    def forward(
        self,
        image_embeds: paddle.Tensor,
        input_ids: paddle.Tensor,
        attention_mask: paddle.Tensor,
        image_ids: paddle.Tensor | None = None,
        losses: Sequence[str] = LOSSES,
    ) -> PretrainingOutput:
        """Stage-1 losses for a batch of image-encoder features and their captions.

        ``input_ids`` are BERT tokens starting with [CLS]; for ITG the first token is replaced by
        ``config.bos_token_id`` ([DEC]). ``image_ids`` (optional) mark samples showing the same
        image, which then count as positives for ITC and are never drawn as ITM negatives.
        """
        unknown = set(losses) - set(LOSSES)
        if unknown or not losses:
            raise ValueError(f"losses must be a non-empty subset of {LOSSES}, got {tuple(losses)}")
        with paddle.no_grad():
            self.temp.set_value(self.temp.clip(*TEMP_RANGE))

        image_embeds = self.qformer.ln_vision(image_embeds)
        query_out, image_feats = self.image_features(image_embeds)
        rank, world = rank_and_world_size()
        batch = image_embeds.shape[0]
        result: dict[str, paddle.Tensor] = {}

        if "itc" in losses or "itm" in losses:
            _, text_feat = self.text_features(input_ids, attention_mask)
            positives = positives_matrix(batch, rank, world, image_ids)
            # Each rank's own features keep their gradient; the gathered ones are constants (as LAVIS).
            sim_i2t = self.itc_similarity(image_feats, concat_all_gather(text_feat)) / self.temp
            sim_t2i = self.itc_similarity(concat_all_gather(image_feats), text_feat).t() / self.temp
            if "itc" in losses:
                targets = positives / positives.sum(1, keepdim=True)
                result["itc"] = (
                    smoothed_cross_entropy(sim_i2t, targets, LABEL_SMOOTHING)
                    + smoothed_cross_entropy(sim_t2i, targets, LABEL_SMOOTHING)
                ) / 2
            if "itm" in losses:
                result["itm"] = self._itm_loss(image_embeds, input_ids, attention_mask, sim_i2t, sim_t2i, positives)

        if "itg" in losses:
            result["itg"] = self._itg_loss(query_out, input_ids, attention_mask)

        total = paddle.add_n([result[name] for name in LOSSES if name in result])
        return PretrainingOutput(total, result.get("itc"), result.get("itm"), result.get("itg"))

    def _itm_loss(
        self,
        image_embeds: paddle.Tensor,
        input_ids: paddle.Tensor,
        attention_mask: paddle.Tensor,
        sim_i2t: paddle.Tensor,
        sim_t2i: paddle.Tensor,
        positives: paddle.Tensor,
    ) -> paddle.Tensor:
        """Hard negatives drawn from the ITC softmax: (image, text), (negative image, text), (image, negative text)."""
        if positives.shape[1] < 2:
            raise ValueError("ITM needs at least 2 samples across all ranks to draw negatives from")
        batch = image_embeds.shape[0]
        ids_world = concat_all_gather(input_ids)
        mask_world = concat_all_gather(attention_mask)
        images_world = all_gather_with_grad(image_embeds)
        negative_images = sample_hard_negatives(sim_t2i, positives)
        negative_texts = sample_hard_negatives(sim_i2t, positives)
        images = paddle.concat([image_embeds, paddle.gather(images_world, negative_images), image_embeds])
        texts = paddle.concat([input_ids, input_ids, paddle.gather(ids_world, negative_texts)])
        masks = paddle.concat([attention_mask, attention_mask, paddle.gather(mask_world, negative_texts)])
        logits = self.itm_head(self.multimodal_features(images, texts, masks)).mean(1)
        labels = paddle.concat([paddle.ones([batch], "int64"), paddle.zeros([2 * batch], "int64")])
        return F.cross_entropy(logits, labels)

    def itg_logits(
        self, query_out: QFormerOutput, input_ids: paddle.Tensor, attention_mask: paddle.Tensor
    ) -> paddle.Tensor:
        """Next-token logits [batch, text, vocab] of the text decoded after the cached queries."""
        out = self.qformer(
            input_ids=input_ids, attention_mask=attention_mask, past_key_values=query_out.past_key_values, causal=True
        )
        word_embeddings = self.qformer.embeddings.word_embeddings.weight
        return self.lm_head(out.last_hidden_state, word_embeddings)

    def _itg_loss(
        self, query_out: QFormerOutput, input_ids: paddle.Tensor, attention_mask: paddle.Tensor
    ) -> paddle.Tensor:
        decoder_ids = paddle.concat(
            [paddle.full([input_ids.shape[0], 1], self.qformer.config.bos_token_id, input_ids.dtype), input_ids[:, 1:]],
            axis=1,
        )
        logits = self.itg_logits(query_out, decoder_ids, attention_mask)[:, :-1]
        labels = paddle.where(
            attention_mask[:, 1:] == 0, paddle.full_like(decoder_ids[:, 1:], -100), decoder_ids[:, 1:]
        )
        valid = (labels != -100).flatten()
        logits = logits.reshape([-1, logits.shape[-1]])[valid]
        labels = labels.flatten()[valid]
        per_token = smoothed_cross_entropies(logits, F.one_hot(labels, logits.shape[-1]), LABEL_SMOOTHING)
        if rank_and_world_size()[1] == 1:
            return per_token.mean()
        # captions differ in length across ranks: the mean over the global batch's tokens, not each rank's own
        return global_token_mean(per_token.sum(), valid.astype(per_token.dtype).sum())
