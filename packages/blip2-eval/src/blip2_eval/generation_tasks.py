"""One batch of captions or answers from a BLIP-2 model, with the pinned settings."""

from __future__ import annotations

from typing import Any

from .settings import GenerationSettings


def encode_prompts(tokenizer: Any, texts: list[str], left_pad: bool) -> tuple[Any, Any]:
    """Token ids and mask, padded on the side asked for (left for a decoder-only LLM: LAVIS #188)."""
    import paddle

    from blip2_data import pad_sequences

    rows = [list(ids) for ids in tokenizer(texts)["input_ids"]]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids, mask = pad_sequences(rows, pad, "left" if left_pad else "right")
    return paddle.to_tensor(ids), paddle.to_tensor(mask)


class CaptionTask:
    key = "image_id"

    def __init__(self, model: Any, tokenizer: Any, settings: GenerationSettings, qformer_tokenizer: Any = None) -> None:
        self.model, self.tokenizer, self.settings = model, tokenizer, settings
        # a model whose prompt is an instruction (InstructBLIP) reads it in its Q-Former too
        self.qformer_tokenizer = qformer_tokenizer if getattr(model, "prompt_is_instruction", False) else None

    def __call__(self, batch: dict[str, Any]) -> list[dict]:
        import paddle

        pixels = paddle.to_tensor(batch["pixel_values"])
        count = len(batch["image_id"])
        ids = mask = None
        text: dict[str, Any] = {}
        if self.settings.prompt:
            left_pad = self.model.language_model.is_decoder_only
            ids, mask = encode_prompts(self.tokenizer, [self.settings.prompt] * count, left_pad)
        if self.qformer_tokenizer is not None:
            qformer_ids, qformer_mask = encode_prompts(self.qformer_tokenizer, [self.settings.prompt] * count, False)
            text = {"qformer_input_ids": qformer_ids, "qformer_attention_mask": qformer_mask}
        out = self.model.generate(pixels, ids, mask, **text, **self.settings.generate_kwargs())
        captions = self.tokenizer.batch_decode(out.numpy().tolist(), skip_special_tokens=True)
        # LAVIS scores the continuation alone (the prompt is not part of the caption)
        return [{"image_id": int(i), "caption": c.strip()} for i, c in zip(batch["image_id"], captions)]


class VqaTask:
    key = "question_id"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        settings: GenerationSettings,
        lemmatizer: Any = None,
        qformer_tokenizer: Any = None,
    ) -> None:
        self.model, self.tokenizer, self.settings, self.lemmatizer = model, tokenizer, settings, lemmatizer
        # a model whose Q-Former reads the question (config qformer_text_input) needs its BERT tokenizer too
        self.qformer_tokenizer = qformer_tokenizer

    def __call__(self, batch: dict[str, Any]) -> list[dict]:
        import paddle

        from blip2_data import pre_question

        questions = [pre_question(q) for q in batch["text_input"]]  # LAVIS: lower-cased, .!"()*#:;~ removed
        kwargs = self.settings.generate_kwargs()
        answers = self.model.predict_answers(
            paddle.to_tensor(batch["pixel_values"]),
            questions,
            self.tokenizer,
            prompt=self.settings.prompt,
            qformer_tokenizer=self.qformer_tokenizer,
            **kwargs,
        )
        records = [{"question_id": int(q), "answer": a} for q, a in zip(batch["question_id"], answers)]
        if self.lemmatizer is not None and self.lemmatizer.active:
            for record, lemma in zip(records, self.lemmatizer(answers)):
                record["generated"], record["answer"] = record["answer"], lemma
        return records
