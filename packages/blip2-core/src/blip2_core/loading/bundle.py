"""A model ready to use: the weights with everything that turns images and text into its inputs and back.

``load_bundle`` is the one place a model directory (or name) becomes model + LLM tokenizer + Q-Former tokenizer +
image processor + decoding defaults; blip2-predict, blip2-serve (its gallery too), blip2-eval and blip2-train all
load through it, so what one of them loads the others load the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model.generation_settings import GenerationSettings


@dataclass
class ModelBundle:
    """``tokenizer`` is the LLM's for a stage-2 model and the Q-Former's (BERT) for a stage-1 one;
    ``qformer_tokenizer`` is set for a stage-2 model whose Q-Former reads the question (``qformer_text_input``)."""

    model: Any
    tokenizer: Any
    image_processor: Any
    qformer_tokenizer: Any = None
    name: str = ""

    @property
    def model_type(self) -> str:
        """config.json's model type ("blip-2", or another model built on the same parts, e.g. "instructblip")."""
        return getattr(self.model.config, "model_type", "blip-2")

    @property
    def llm_type(self) -> str | None:
        return getattr(self.model.config, "llm_type", None) if hasattr(self.model, "language_model") else None

    def generation(self, task: str, settings: GenerationSettings | None = None) -> GenerationSettings:
        """``settings`` (default: all defaults) resolved for ``task`` ("caption" / "vqa") and this model's LLM."""
        if self.llm_type is None:
            raise ValueError(f"{self.name}: a stage-1 model generates no text")
        return (settings or GenerationSettings()).resolved(task, self.llm_type, self.model_type)


def load_bundle(
    name_or_path: str | os.PathLike,
    *,
    stage1: bool = False,
    llm: str | None = None,
    tokenizer: str | None = None,
    qformer_tokenizer: str | None = None,
    image_size: int | None = None,
    trust_pickle: bool = False,
    dtype: str = "float32",
    allow_missing_weights: bool = False,
) -> ModelBundle:
    """Load a model by name or path with its tokenizers and image processor, in eval mode.

    ``stage1``: a ``Blip2Qformer`` (retrieval, features) instead of a ``Blip2ForConditionalGeneration``.
    ``llm`` / ``tokenizer`` / ``qformer_tokenizer``: override what the model directory names. ``image_size``: the
    evaluation resolution, instead of the model's own preprocessing. Errors (``OSError`` / ``ValueError``) say what
    is missing and what to pass."""
    from ..model.modeling import Blip2ForConditionalGeneration, Blip2Qformer
    from .default_model import embedded_model_path
    from .text_tokenizer import load_tokenizer, qformer_tokenizer_for_model, tokenizer_for_model

    name = display_name = os.fspath(name_or_path)
    embedded = embedded_model_path(name)
    if embedded is not None:  # blip2-shapes: its folder, where its tokenizers are too
        name = str(embedded)
    model_class = Blip2Qformer if stage1 else Blip2ForConditionalGeneration
    if not stage1:  # a checkpoint of another model on the same parts builds its own class (``model_types``)
        model_class = _model_type(name).load_class()
    kwargs: dict[str, Any] = {"trust_pickle": trust_pickle, "allow_missing_weights": allow_missing_weights}
    if not stage1:
        kwargs.update(text_name_or_path=llm, dtype=None if dtype == "float32" else dtype)
    elif dtype != "float32":
        raise ValueError(f"dtype={dtype!r}: stage-1 models run in float32")
    model = model_class.from_pretrained(name, **kwargs)
    model.eval()
    if stage1:
        try:
            text_tokenizer = load_tokenizer(tokenizer or name)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"no Q-Former (BERT) tokenizer for {name}: {error}; pass its tokenizer directory"
            ) from None
        question_tokenizer = None
    else:
        text_tokenizer = tokenizer_for_model(model, name, tokenizer)
        question_tokenizer = qformer_tokenizer_for_model(model, name, qformer_tokenizer)
    return ModelBundle(
        model, text_tokenizer, image_processor_for(model, name, image_size), question_tokenizer, display_name
    )


def image_processor_for(model: Any, directory: str | os.PathLike, image_size: int | None = None) -> Any:
    """The evaluation transform: ``directory``'s preprocessor_config.json (a model loaded from a folder), else CLIP's
    at the model's size; ``image_size`` overrides the size (and then the saved preprocessing is not read)."""
    from blip2_data import ImageProcessor, ImageProcessorConfig

    config_file = Path(directory).expanduser() / "preprocessor_config.json"
    if image_size is None and config_file.is_file():
        return ImageProcessor.from_pretrained(config_file.parent, train=False)
    size = image_size or model.config.vision_config.image_size
    return ImageProcessor(ImageProcessorConfig(image_size=size), train=False)


def _model_type(name: str) -> Any:
    """The model type of a known name or local directory (``model_types.for_checkpoint``), or of a Hub repo not in
    the table, by its config.json (fetched alone: the weights follow only once the class is known)."""
    from . import hub, model_names
    from .model_types import BLIP2, for_checkpoint

    found = for_checkpoint(name)
    if found is not BLIP2 or Path(name).expanduser().exists() or model_names.lookup(name) or "/" not in name:
        return found
    try:
        return for_checkpoint(hub.resolve(name, allow_patterns=["config.json"]))
    except (OSError, ValueError):  # not reachable now: the loader says why, in its own words
        return found
