"""Stage 2: the Q-Former's query outputs, projected, prefix a frozen LLM (captioning, VQA), with KV-cached decoding."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import paddle
from paddle import nn

from blip2_data import VQA_PROMPT
from blip2_eva_vit import EvaVisionTransformer
from blip2_qformer import QFormer

from .base import Blip2ModelBase, Blip2Output, token_cross_entropy, tokenize
from .config import Blip2Config
from .generation import GenerationConfig, generate
from .language_model import LanguageModel, reorder_cache


class Blip2ForConditionalGeneration(Blip2ModelBase, nn.Layer):
    """Captioning and visual question answering: the Q-Former's query outputs, projected, prefix the LLM input."""

    config_class = Blip2Config  # what from_pretrained reads config.json with
    # A caption prompt is words the caption continues (LAVIS's "a photo of"); a model whose prompt is an instruction
    # that its answer follows (InstructBLIP) sets this, and the tools then neither prefix nor strip the prompt.
    prompt_is_instruction = False
    vqa_prompt = VQA_PROMPT  # predict_answers' template for the question

    def __init__(self, config: Blip2Config) -> None:
        super().__init__()
        if config.text_config is None:
            raise ValueError(
                "Blip2ForConditionalGeneration needs a text_config (the LLM); for stage 1 use Blip2Qformer"
            )
        self.config = config
        self.load_report = None
        # the image side as a compiled oneDNN graph, set by the CPU bfloat16 loading path (``loading.precision``)
        self.compiled_image_encoder = None
        self.vision_model = EvaVisionTransformer(config.vision_config)
        self.qformer = QFormer(config.qformer_config)
        self.language_model = LanguageModel(config.text_config)
        self.language_projection = nn.Linear(config.qformer_config.hidden_size, self.language_model.hidden_size)
        for param in self.language_model.parameters():
            param.stop_gradient = True  # the LLM stays frozen
        if config.freeze_vit:
            self.vision_model.freeze()
        self.generation_config = GenerationConfig(
            eos_token_id=self.language_model.eos_token_id, pad_token_id=self.language_model.pad_token_id
        )

    # -- image side --------------------------------------------------------------------------------

    def get_image_features(
        self,
        pixel_values: paddle.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        qformer_input_ids: paddle.Tensor | None = None,
        qformer_attention_mask: paddle.Tensor | None = None,
        image_embeds: paddle.Tensor | None = None,
    ) -> paddle.Tensor:
        """The LLM-side visual tokens [batch, queries, llm_hidden]; compute once, reuse for many prompts.

        ``image_embeds``: the image encoder's output [batch, patches + 1, vision_hidden] in place of
        ``pixel_values``, e.g. read from a feature cache of the frozen ViT (blip2-train's ``cache-features``).
        ``qformer_input_ids`` / ``qformer_attention_mask`` (BERT ids of e.g. the question; the Q-Former needs its
        text parts, ``has_text_input``): the text runs beside the queries, which attend to it (the paper's VQA
        fine-tuning); only the query outputs go on to the LLM.

        With ``compiled_image_encoder`` set (bfloat16 on a CPU, see ``blip2_core.loading.precision``) the pixels go
        through that graph instead."""
        if self.compiled_image_encoder is not None:
            return self.compiled_image_encoder(
                pixel_values, interpolate_pos_encoding, qformer_input_ids, qformer_attention_mask, image_embeds
            )
        image_embeds = self.encode_image(pixel_values, image_embeds, interpolate_pos_encoding)
        image_embeds = image_embeds.astype(self.qformer.query_tokens.dtype)
        if qformer_input_ids is None:
            queries = self.qformer(image_embeds).last_hidden_state
        else:
            hidden = self.qformer(
                image_embeds, input_ids=qformer_input_ids, attention_mask=qformer_attention_mask
            ).last_hidden_state
            queries = hidden[:, : self.qformer.query_tokens.shape[1]]
        return self.language_projection(queries)

    def _image_features(
        self,
        pixel_values: paddle.Tensor | None,
        image_features: paddle.Tensor | None,
        qformer_input_ids: paddle.Tensor | None = None,
        qformer_attention_mask: paddle.Tensor | None = None,
        image_embeds: paddle.Tensor | None = None,
    ) -> paddle.Tensor:
        given = [name for name, value in (("pixel_values", pixel_values), ("image_embeds", image_embeds),
                                          ("image_features", image_features)) if value is not None]  # fmt: skip
        if len(given) != 1:
            raise ValueError(
                f"pass exactly one of pixel_values, image_embeds and image_features (got {given or 'none'})"
            )
        if image_features is not None:
            return image_features
        return self.get_image_features(
            pixel_values,
            qformer_input_ids=qformer_input_ids,
            qformer_attention_mask=qformer_attention_mask,
            image_embeds=image_embeds,
        )

    def _merge(
        self, image_features: paddle.Tensor, input_ids: paddle.Tensor, attention_mask: paddle.Tensor | None
    ) -> tuple[paddle.Tensor, paddle.Tensor]:
        """LLM input embeddings and mask: the visual tokens replace the image tokens of ``input_ids``
        (HF's newer processors put them there), or else come first (LAVIS, older HF)."""
        if attention_mask is None:
            attention_mask = paddle.ones(input_ids.shape, dtype="int64")
        batch, queries = image_features.shape[0], image_features.shape[1]
        if image_features.shape[0] != input_ids.shape[0]:
            if input_ids.shape[0] % batch:
                raise ValueError(f"{input_ids.shape[0]} prompts for {batch} images: not a multiple")
            # one image, several prompts: repeat each image's features for its prompts
            rows = paddle.arange(batch).repeat_interleave(input_ids.shape[0] // batch)
            image_features = paddle.index_select(image_features, rows, axis=0)
        text_embeds = self.language_model.embed(input_ids).astype(image_features.dtype)
        token = self.config.image_token_index
        if token is not None and bool((input_ids == token).any()):
            is_image = input_ids == token
            counts = is_image.astype("int64").sum(1).numpy()
            if (counts != queries).any():
                raise ValueError(f"each prompt must hold {queries} image tokens (id {token}), found {counts.tolist()}")
            # row-major order of the image positions = query order within each row
            flat_positions = paddle.nonzero(is_image.flatten()).flatten()
            flat = text_embeds.reshape([-1, text_embeds.shape[-1]])
            flat = paddle.scatter(flat, flat_positions, image_features.reshape([-1, image_features.shape[-1]]))
            return flat.reshape(text_embeds.shape), attention_mask
        embeds = paddle.concat([image_features, text_embeds], axis=1)
        mask = paddle.concat(
            [paddle.ones([input_ids.shape[0], queries], dtype=attention_mask.dtype), attention_mask], axis=1
        )
        return embeds, mask

    # -- training / scoring --------------------------------------------------------------------------

    def forward(
        self,
        pixel_values: paddle.Tensor | None = None,
        input_ids: paddle.Tensor | None = None,
        attention_mask: paddle.Tensor | None = None,
        labels: paddle.Tensor | None = None,
        decoder_input_ids: paddle.Tensor | None = None,
        image_features: paddle.Tensor | None = None,
        qformer_input_ids: paddle.Tensor | None = None,
        qformer_attention_mask: paddle.Tensor | None = None,
        image_embeds: paddle.Tensor | None = None,
    ) -> Blip2Output:
        """Logits (and the loss with ``labels``; -100 is ignored).

        The image as one of ``pixel_values``, ``image_embeds`` (the image encoder's output, e.g. cached) or
        ``image_features`` (the LLM-side visual tokens). ``qformer_input_ids`` / ``qformer_attention_mask``: text
        for the Q-Former beside the queries (see ``get_image_features``), one row per image.

        In training mode under data parallelism the loss is the mean over the tokens of every rank's batch
        (``token_cross_entropy(across_ranks=True)``): every rank must call forward with labels together.

        Decoder-only: ``labels`` [batch, L] align with the last L positions (``make_labels`` builds
        LAVIS's: prompt and padding masked). FlanT5: queries + ``input_ids`` feed the encoder and
        ``labels`` are the decoder targets, shifted right inside.
        """
        if input_ids is None:
            raise ValueError("input_ids are required (the prompt, or the text to score)")
        features = self._image_features(
            pixel_values, image_features, qformer_input_ids, qformer_attention_mask, image_embeds
        )
        embeds, mask = self._merge(features, input_ids, attention_mask)
        lm = self.language_model
        across_ranks = self.training  # data-parallel training: the mean over the global batch's tokens
        if lm.is_decoder_only:
            logits, _ = lm.decoder_step(embeds, mask)
            loss = None
            if labels is not None:
                # Position p predicts token p + 1. With the visual tokens before the text (LAVIS), the last query
                # position predicts the first label, which LAVIS scores (an empty prompt masks nothing).
                total, length = logits.shape[1], labels.shape[1]
                if total > length:
                    loss = token_cross_entropy(logits[:, total - length - 1 : total - 1], labels, across_ranks)
                else:  # the labels cover every position: the first one has no prediction
                    loss = token_cross_entropy(logits[:, :-1], labels[:, 1:], across_ranks)
            return Blip2Output(logits, loss)
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("an encoder-decoder LLM needs labels or decoder_input_ids")
            decoder_input_ids = lm.shift_right(labels)
        encoded = lm.encode(embeds, mask)
        logits, _ = lm.decode(decoder_input_ids, encoded, mask)
        loss = None
        if labels is not None:
            loss = token_cross_entropy(logits, labels, across_ranks)
        return Blip2Output(logits, loss)

    @staticmethod
    def make_labels(
        input_ids: paddle.Tensor, attention_mask: paddle.Tensor, prompt_lengths: Sequence[int]
    ) -> paddle.Tensor:
        """LAVIS's stage-2 targets for a decoder-only LLM: the text ids with padding and the prompt set to -100.

        ``prompt_lengths[i]``: the number of prompt tokens at the start of row i's text (after any left padding).
        The query positions are not in ``input_ids`` and so never count.
        """
        mask = attention_mask.numpy().astype(bool)
        labels = np.where(mask, input_ids.numpy(), -100)
        for row, length in enumerate(prompt_lengths):
            start = int(np.argmax(mask[row])) if mask[row].any() else mask.shape[1]
            labels[row, start : start + int(length)] = -100
        return paddle.to_tensor(labels)

    # -- generation ----------------------------------------------------------------------------------

    @paddle.no_grad()
    def generate(
        self,
        pixel_values: paddle.Tensor | None = None,
        input_ids: paddle.Tensor | None = None,
        attention_mask: paddle.Tensor | None = None,
        image_features: paddle.Tensor | None = None,
        generation_config: GenerationConfig | None = None,
        qformer_input_ids: paddle.Tensor | None = None,
        qformer_attention_mask: paddle.Tensor | None = None,
        **settings: Any,
    ) -> paddle.Tensor:
        """New token ids [batch * num_return_sequences, new] (``pad_token_id`` after EOS).

        ``input_ids``: the prompts, one per image or several per image (left-padded for a decoder-only LLM);
        without them the LLM starts from its BOS token. ``qformer_input_ids`` / ``qformer_attention_mask``: text
        the Q-Former reads beside its queries (one row per image; see ``get_image_features``), e.g. InstructBLIP's
        instruction. ``settings`` override ``generation_config`` fields (max_new_tokens, min_new_tokens,
        num_beams, do_sample, temperature, top_k, top_p, repetition_penalty, length_penalty,
        num_return_sequences, eos_token_id, ...).
        """
        config = dataclasses.replace(generation_config or self.generation_config, **settings)
        features = self._image_features(pixel_values, image_features, qformer_input_ids, qformer_attention_mask)
        lm = self.language_model
        if input_ids is None:
            start = lm.bos_token_id if lm.bos_token_id is not None else lm.pad_token_id
            input_ids = paddle.full([features.shape[0], 1], start, dtype="int64")
            attention_mask = None
        embeds, mask = self._merge(features, input_ids, attention_mask)
        if lm.is_decoder_only:
            stepper = _DecoderOnlyStepper(lm, embeds, mask)
            history = input_ids
        else:
            stepper = _EncoderDecoderStepper(lm, embeds, mask)
            history = paddle.full([input_ids.shape[0], 1], lm.decoder_start_token_id, dtype="int64")
        return generate(stepper, history, config, vocab_size=lm.vocab_size)

    @paddle.no_grad()
    def predict_answers(
        self,
        pixel_values: paddle.Tensor | None,
        questions: Sequence[str],
        tokenizer: Any,
        prompt: str | None = None,
        image_features: paddle.Tensor | None = None,
        num_beams: int = 5,
        max_new_tokens: int = 10,
        min_new_tokens: int = 1,
        length_penalty: float = -1.0,
        qformer_tokenizer: Any = None,
        **settings: Any,
    ) -> list[str]:
        """VQA with the paper's settings (beam 5, at most 10 new tokens, length penalty -1); ``prompt`` (a template
        for the question) defaults to the model's ``vqa_prompt``.

        One question per image; prompts are left-padded for a decoder-only LLM (LAVIS #188: right
        padding wrecks accuracy). A model with ``config.qformer_text_input`` (VQA fine-tuned with the question
        beside the Q-Former's queries) gets each question in the Q-Former too, in ``qformer_tokenizer``'s (BERT)
        tokens; its visual tokens then depend on the question, so ``image_features`` cannot stand in for the pixels.
        """
        prompt = self.vqa_prompt if prompt is None else prompt
        texts = [prompt.format(question) for question in questions]
        input_ids, attention_mask = tokenize(tokenizer, texts, left_pad=self.language_model.is_decoder_only)
        if self.config.qformer_text_input:
            if qformer_tokenizer is None:
                raise ValueError(
                    "this model reads the question in its Q-Former (config qformer_text_input): pass "
                    "qformer_tokenizer, the Q-Former's BERT tokenizer (qformer_tokenizer/ in the model directory)"
                )
            if image_features is not None:
                raise ValueError(
                    "this model's visual tokens depend on the question (config qformer_text_input): pass "
                    "pixel_values, not image_features"
                )
            qformer_texts = self.qformer_texts(list(questions), texts)
            qformer_ids, qformer_mask = tokenize(qformer_tokenizer, qformer_texts, left_pad=False)
            image_features = self._image_features(pixel_values, None, qformer_ids, qformer_mask)
            pixel_values = None
        ids = self.generate(
            pixel_values,
            input_ids,
            attention_mask,
            image_features=image_features,
            num_beams=num_beams,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            length_penalty=length_penalty,
            **settings,
        )
        return [text.strip() for text in tokenizer.batch_decode(ids.numpy().tolist(), skip_special_tokens=True)]

    def qformer_texts(self, questions: list[str], prompts: list[str]) -> list[str]:
        """What the Q-Former reads when answering: the bare questions (BLIP-2's VQA fine-tuning); a model that
        reads its whole instruction there (InstructBLIP) returns ``prompts``, the questions in their template."""
        return questions


class _DecoderOnlyStepper:
    def __init__(self, lm: LanguageModel, embeds: paddle.Tensor, mask: paddle.Tensor) -> None:
        self.lm, self.embeds, self.mask, self.cache = lm, embeds, mask, None

    def start(self, rows: paddle.Tensor) -> paddle.Tensor:
        self.mask = paddle.index_select(self.mask, rows, axis=0)
        embeds = paddle.index_select(self.embeds, rows, axis=0)
        logits, self.cache = self.lm.decoder_step(embeds, self.mask, use_cache=True, last_only=True)
        return logits[:, -1]

    def select(self, rows: paddle.Tensor) -> None:
        self.cache = reorder_cache(self.cache, rows)
        self.mask = paddle.index_select(self.mask, rows, axis=0)

    def next(self, tokens: paddle.Tensor) -> paddle.Tensor:
        self.mask = paddle.concat([self.mask, paddle.ones([tokens.shape[0], 1], dtype=self.mask.dtype)], axis=1)
        embeds = self.lm.embed(tokens.unsqueeze(1)).astype(self.embeds.dtype)
        logits, self.cache = self.lm.decoder_step(embeds, self.mask, cache=self.cache, use_cache=True, last_only=True)
        return logits[:, -1]


class _EncoderDecoderStepper:
    def __init__(self, lm: LanguageModel, embeds: paddle.Tensor, mask: paddle.Tensor) -> None:
        self.lm, self.mask = lm, mask
        self.encoded = lm.encode(embeds, mask)
        self.cache = self.decoded = None

    def start(self, rows: paddle.Tensor) -> paddle.Tensor:
        self.encoded = paddle.index_select(self.encoded, rows, axis=0)
        self.mask = paddle.index_select(self.mask, rows, axis=0)
        self.decoded = paddle.full([rows.shape[0], 1], self.lm.decoder_start_token_id, dtype="int64")
        logits, self.cache = self.lm.decode(self.decoded, self.encoded, self.mask, use_cache=True)
        return logits[:, -1]

    def select(self, rows: paddle.Tensor) -> None:
        self.cache = reorder_cache(self.cache, rows)
        self.encoded = paddle.index_select(self.encoded, rows, axis=0)
        self.mask = paddle.index_select(self.mask, rows, axis=0)
        self.decoded = paddle.index_select(self.decoded, rows, axis=0)

    def next(self, tokens: paddle.Tensor) -> paddle.Tensor:
        self.decoded = paddle.concat([self.decoded, tokens.unsqueeze(1)], axis=1)
        logits, self.cache = self.lm.decode(self.decoded, self.encoded, self.mask, cache=self.cache, use_cache=True)
        return logits[:, -1]
