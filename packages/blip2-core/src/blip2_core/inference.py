"""A loaded model ready to caption, answer and encode images: what blip2-predict and blip2-serve share.

It knows nothing about files of results or HTTP; callers hand it decoded images and get text back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_CAPTION_PROMPT = ""  # LAVIS's caption_coco models are prompted with "a photo of"; --prompt sets it


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings; None means the task's default (captions: LAVIS's beam 5, 8-30 new tokens;
    answers: the paper's beam 5, 1-10 new tokens, length penalty -1)."""

    num_beams: int = 5
    max_new_tokens: int | None = None
    min_new_tokens: int | None = None
    length_penalty: float | None = None
    repetition_penalty: float = 1.0
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def for_captions(self) -> dict[str, Any]:
        settings = self._common()
        settings["max_new_tokens"] = self.max_new_tokens or 30
        default_min = 8 if self.num_beams > 1 else 0
        settings["min_new_tokens"] = default_min if self.min_new_tokens is None else self.min_new_tokens
        if self.length_penalty is not None:
            settings["length_penalty"] = self.length_penalty
        return settings

    def for_answers(self) -> dict[str, Any]:
        settings = self._common()
        settings["max_new_tokens"] = self.max_new_tokens or 10
        settings["min_new_tokens"] = 1 if self.min_new_tokens is None else self.min_new_tokens
        settings["length_penalty"] = -1.0 if self.length_penalty is None else self.length_penalty
        return settings

    def _common(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"num_beams": self.num_beams}
        if self.repetition_penalty != 1.0:
            settings["repetition_penalty"] = self.repetition_penalty
        if self.do_sample:
            settings.update(do_sample=True, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)
        return settings


class Predictor:
    """A BLIP-2 model with its tokenizer and image processor (and the Q-Former's tokenizer for a model whose
    Q-Former reads the question, ``config.qformer_text_input``)."""

    def __init__(
        self, model: Any, tokenizer: Any, processor: Any, name: str = "", qformer_tokenizer: Any = None
    ) -> None:
        self.model, self.tokenizer, self.processor, self.name = model, tokenizer, processor, name
        self.qformer_tokenizer = qformer_tokenizer

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
        from .modeling import Blip2ForConditionalGeneration
        from .text_tokenizer import qformer_tokenizer_for_model, tokenizer_for_model

        model = Blip2ForConditionalGeneration.from_pretrained(
            name_or_path,
            text_name_or_path=llm,
            trust_pickle=trust_pickle,
            dtype=None if dtype == "float32" else dtype,
        )
        model.eval()
        model_path = Path(name_or_path) if Path(name_or_path).exists() else None
        tokenizer_ = tokenizer_for_model(model, name_or_path, tokenizer)
        qformer_tokenizer = qformer_tokenizer_for_model(model, name_or_path)
        processor = _image_processor(model, model_path)
        return cls(model, tokenizer_, processor, name=str(name_or_path), qformer_tokenizer=qformer_tokenizer)

    @property
    def dtype(self) -> str:
        """What runs: one dtype, or the image side's and the LLM's where they differ (CPU bfloat16)."""
        from .pretrained import running_dtype

        return running_dtype(self.model)

    def pixels(self, image: Any) -> np.ndarray:
        """One RGB PIL image -> the model's normalised input [3, size, size]."""
        return self.processor(image)

    def caption(self, pixels: Sequence[np.ndarray], prompt: str, settings: GenerationSettings) -> list[str]:
        """One caption per image, continuing ``prompt`` (whose words stay in front)."""
        import paddle

        from .modeling import tokenize

        input_ids, mask = tokenize(
            self.tokenizer, [prompt] * len(pixels), left_pad=self.model.language_model.is_decoder_only
        )
        ids = self.model.generate(paddle.to_tensor(np.stack(pixels)), input_ids, mask, **settings.for_captions())
        texts = [t.strip() for t in self.tokenizer.batch_decode(ids.numpy().tolist(), skip_special_tokens=True)]
        return [f"{prompt.strip()} {text}".strip() if prompt else text for text in texts]

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
            **settings.for_answers(),
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
            "question_in_qformer": bool(config.qformer_text_input),
            "caption_defaults": GenerationSettings().for_captions(),
            "answer_defaults": GenerationSettings().for_answers(),
        }


def _image_processor(model: Any, model_path: Path | None) -> Any:
    from blip2_data import ImageProcessor, ImageProcessorConfig

    if model_path is not None and (model_path / "preprocessor_config.json").exists():
        return ImageProcessor.from_pretrained(model_path)
    return ImageProcessor(ImageProcessorConfig(image_size=model.config.vision_config.image_size))
