"""Loading what a model-running evaluation needs: the model, its tokenizer and its eval image processor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .json_files import EvalInputError


def load_model(name_or_path: str, stage1: bool) -> Any:
    from blip2_core import Blip2ForConditionalGeneration, Blip2Qformer

    cls = Blip2Qformer if stage1 else Blip2ForConditionalGeneration
    model = cls.from_pretrained(name_or_path)
    model.eval()
    return model


def load_tokenizer_for(model: Any, name_or_path: str, tokenizer: str | None) -> Any:
    """``--tokenizer``, else the model directory's files, else the LLM's named in the config (blip2-core's rule,
    shared with blip2-predict); a failure is an input error listing what was tried."""
    from blip2_core.text_tokenizer import tokenizer_for_model

    try:
        return tokenizer_for_model(model, name_or_path, tokenizer)
    except ValueError as error:
        raise EvalInputError(str(error)) from None


def load_qformer_tokenizer_for(model: Any, name_or_path: str) -> Any:
    """The Q-Former's tokenizer of a model whose Q-Former reads the question (blip2-core's rule), else None."""
    from blip2_core.text_tokenizer import qformer_tokenizer_for_model

    try:
        return qformer_tokenizer_for_model(model, name_or_path)
    except ValueError as error:
        raise EvalInputError(str(error)) from None


def eval_image_processor(model: Any, name_or_path: str, image_size: int | None) -> Any:
    """The model's own preprocessing (preprocessor_config.json) in eval mode, else CLIP's at the model's size."""
    from blip2_data import ImageProcessor, ImageProcessorConfig

    directory = Path(name_or_path)
    if image_size is None and (directory / "preprocessor_config.json").is_file():
        return ImageProcessor.from_pretrained(directory, train=False)
    size = image_size or model.config.vision_config.image_size
    return ImageProcessor(ImageProcessorConfig(image_size=size), train=False)


def lavis_eos_token_ids(model: Any, tokenizer: Any) -> tuple[int, ...]:
    """LAVIS ends OPT generations at "\\n" alone (its eos for OPT); other LLMs, and vocabularies without a
    single newline token, keep the model's own eos ids."""
    own = tuple(model.generation_config.eos_token_id)
    if not model.language_model.is_decoder_only:
        return own
    try:
        newline = list(tokenizer("\n", add_special_tokens=False)["input_ids"])
    except TypeError:  # a tokenizer without add_special_tokens
        return own
    if len(newline) == 1 and newline[0] != getattr(tokenizer, "unk_token_id", None):
        return (int(newline[0]),)
    return own
