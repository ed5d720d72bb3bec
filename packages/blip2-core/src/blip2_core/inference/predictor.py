"""A loaded model ready to caption, answer and encode images: what blip2-predict and blip2-serve share.

It knows nothing about files of results or HTTP; callers hand it decoded images and get text back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..loading.bundle import ModelBundle, load_bundle
from ..model.generation_settings import GenerationSettings

DEFAULT_CAPTION_PROMPT = ""  # LAVIS's caption_coco models are prompted with "a photo of"; --prompt sets it
__all__ = ["DEFAULT_CAPTION_PROMPT", "GenerationSettings", "Predictor"]


class Predictor:
    """A loaded model bundle (model, tokenizers, image processor) that captions, answers and encodes images, each
    task decoded with its defaults for the model's LLM (``GenerationSettings``)."""

    def __init__(self, bundle: ModelBundle) -> None:
        self.bundle = bundle

    @classmethod
    def load(
        cls,
        name_or_path: str,
        *,
        llm: str | None = None,
        tokenizer: str | None = None,
        trust_pickle: bool = False,
        dtype: str = "float32",
    ) -> Predictor:
        """Load by name or path; errors (``OSError``/``ValueError``) say what is missing and what to pass."""
        return cls(load_bundle(name_or_path, llm=llm, tokenizer=tokenizer, trust_pickle=trust_pickle, dtype=dtype))

    model = property(lambda self: self.bundle.model)
    tokenizer = property(lambda self: self.bundle.tokenizer)
    processor = property(lambda self: self.bundle.image_processor)
    qformer_tokenizer = property(lambda self: self.bundle.qformer_tokenizer)
    name = property(lambda self: self.bundle.name)

    @property
    def dtype(self) -> str:
        """What runs: one dtype, or the image side's and the LLM's where they differ (CPU bfloat16)."""
        from ..loading.precision import running_dtype

        return running_dtype(self.model)

    def pixels(self, image: Any) -> np.ndarray:
        """One RGB PIL image -> the model's normalised input [3, size, size]."""
        return self.processor(image)

    def caption(self, pixels: Sequence[np.ndarray], prompt: str, settings: GenerationSettings) -> list[str]:
        """One caption per image, continuing ``prompt`` (whose words stay in front); for a model whose prompt is an
        instruction (InstructBLIP, ``prompt_is_instruction``) the answer to it, the instruction read by the
        Q-Former too."""
        import paddle

        from ..model.modeling import tokenize

        prompts = [prompt] * len(pixels)
        input_ids, mask = tokenize(self.tokenizer, prompts, left_pad=self.model.language_model.is_decoder_only)
        instructed = self.model.prompt_is_instruction
        qformer = {}
        if instructed and self.qformer_tokenizer is not None:
            qformer_ids, qformer_mask = tokenize(self.qformer_tokenizer, prompts, left_pad=False)
            qformer = {"qformer_input_ids": qformer_ids, "qformer_attention_mask": qformer_mask}
        ids = self.model.generate(
            paddle.to_tensor(np.stack(pixels)), input_ids, mask, **qformer, **self.settings_for("caption", settings)
        )
        texts = [t.strip() for t in self.tokenizer.batch_decode(ids.numpy().tolist(), skip_special_tokens=True)]
        return [f"{prompt.strip()} {text}".strip() if prompt and not instructed else text for text in texts]

    def answer(self, pixels: Sequence[np.ndarray], questions: Sequence[str], settings: GenerationSettings) -> list[str]:
        """VQA (zero-shot, or the question also in the Q-Former for a model fine-tuned so): one question per image,
        cleaned as blip2-eval and LAVIS's question processor clean it (lower-cased, some punctuation dropped)."""
        import paddle

        from blip2_data import pre_question

        return self.model.predict_answers(
            paddle.to_tensor(np.stack(pixels)),
            [pre_question(question) for question in questions],
            self.tokenizer,
            qformer_tokenizer=self.qformer_tokenizer,
            **self.settings_for("vqa", settings),
        )

    def features(self, pixels: Sequence[np.ndarray]) -> np.ndarray:
        """The LLM-side visual tokens [images, queries, hidden] (what ``generate(image_features=...)`` takes)."""
        import paddle

        with paddle.no_grad():
            return self.model.get_image_features(paddle.to_tensor(np.stack(pixels))).astype("float32").numpy()

    def describe(self) -> dict[str, Any]:
        config = self.model.config
        return {
            "name": self.name,
            "dtype": self.dtype,
            "image_size": config.vision_config.image_size,
            "llm": config.text_name_or_path,
            "decoder_only": self.model.language_model.is_decoder_only,
            "model_type": self.bundle.model_type,
            "question_in_qformer": bool(config.qformer_text_input),
            "caption_defaults": self.settings_for("caption"),
            "answer_defaults": self.settings_for("vqa"),
        }

    def check_settings(
        self, task: str, settings: GenerationSettings | None, texts: Sequence[str]
    ) -> GenerationSettings:
        """``settings`` resolved for ``task`` and this model's LLM, checked against what the model can run with
        ``texts`` (the caption prompts, or the questions): ``ValueError`` naming the limit, before any decoding.

        An OPT model has ``max_position_embeddings`` positions for the visual query tokens, the prompt and the new
        tokens together (a T5 encoder-decoder has no such limit); a Q-Former that reads the question has its own
        position table for it."""
        from blip2_data import VQA_PROMPT, pre_question

        resolved = self.bundle.generation(task, settings)
        config = self.model.config
        if task == "vqa":
            texts = [pre_question(text) for text in texts]  # as answer() sends them
        max_positions, prompt_tokens = None, 0
        if self.model.language_model.is_decoder_only:
            template = getattr(self.model, "vqa_prompt", VQA_PROMPT)
            prompts = [template.format(text) for text in texts] if task == "vqa" else list(texts)
            max_positions = config.text_config.max_position_embeddings
            prompt_tokens = config.num_query_tokens + _longest(self.tokenizer, prompts)
        resolved.check(max_positions=max_positions, prompt_tokens=prompt_tokens)
        if task == "vqa" and config.qformer_text_input and self.qformer_tokenizer is not None:
            limit, tokens = config.qformer_config.max_position_embeddings, _longest(self.qformer_tokenizer, texts)
            if tokens > limit:
                raise ValueError(
                    f"the question is {tokens} tokens for the Q-Former, which has {limit} positions: shorten it"
                )
        return resolved

    def settings_for(self, task: str, settings: GenerationSettings | None = None) -> dict[str, Any]:
        """``generate`` keywords for ``task``: ``settings`` with the task's defaults for this model's LLM."""
        return self.bundle.generation(task, settings).generate_kwargs()


def _longest(tokenizer: Any, texts: Sequence[str]) -> int:
    """The most tokens any of ``texts`` becomes (special tokens included, as ``tokenize`` makes them)."""
    return max((len(ids) for ids in tokenizer(list(texts))["input_ids"]), default=0) if texts else 0
