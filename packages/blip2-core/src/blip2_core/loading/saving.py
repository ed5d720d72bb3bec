"""``save_pretrained``: the one writer of model directories and training checkpoints, what ``from_pretrained``
reads back from any working directory.

- A model directory: config.json, generation_config.json, the weights (model.safetensors) and, when given, the
  LLM's tokenizer, the image processor and the Q-Former's tokenizer (``qformer_tokenizer/``). The LLM's weights
  are left out only where the config names where to get the same weights again: a frozen LLM loaded from a
  known name, a Hub id or a local directory (stored as an absolute path, so that the model loads from anywhere;
  if that directory moves, loading says so). An LLM that came embedded (no such name) stays embedded.
- A training checkpoint (``weights_from`` given): the same files, with the weights that training changes (and
  the frozen heads and Q-Former parts, which are small) but not the frozen ViT and LLM, plus
  ``blip2_checkpoint.json`` naming the models, in order, whose weights it loads over. ``from_pretrained`` then
  loads it as the whole model.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..checkpoint_io import write_safetensors
from ..model.config import Blip2Config
from .pretrained import CHECKPOINT_RECORD, GENERATION_CONFIG_FILE
from .text_tokenizer import QFORMER_TOKENIZER_DIR

FROZEN_PARTS = ("vision_model.", "language_model.")  # what a checkpoint leaves to the models it loads over


def save_pretrained(
    model: Any,
    directory: str | os.PathLike,
    tokenizer: Any = None,
    image_processor: Any = None,
    *,
    qformer_tokenizer: Any = None,
    include_llm: bool | None = None,
    weights_from: Sequence[str] | None = None,
) -> Path:
    """Write ``model`` (and the files that make it usable) into ``directory``; returns it.

    ``include_llm``: None decides as the module doc says; True always embeds the LLM; False leaves it out (the
    config must then name it). ``weights_from``: write a training checkpoint over these models (names or paths)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config: Blip2Config = model.config
    keep_llm = _keeps_llm(model, include_llm)
    if config.text_name_or_path and not keep_llm:
        config.text_name_or_path = stable_reference(config.text_name_or_path)
    state = {}
    for name, tensor in model.state_dict().items():
        if name.startswith("language_model.") and not keep_llm:
            continue
        if weights_from is not None and name.startswith(FROZEN_PARTS) and tensor.stop_gradient:
            continue
        state[name] = tensor.astype("float32").numpy() if tensor.dtype != "float32" else tensor.numpy()
    write_safetensors(state, directory)
    config.save(directory)
    if hasattr(model, "generation_config"):
        fields = dataclasses.asdict(model.generation_config)
        fields["eos_token_id"] = list(fields["eos_token_id"])
        (directory / GENERATION_CONFIG_FILE).write_text(json.dumps(fields, indent=2) + "\n")
    record = directory / CHECKPOINT_RECORD
    if weights_from is not None:
        bases = [stable_reference(base) for base in weights_from]
        record.write_text(json.dumps({"weights_from": bases}, indent=2) + "\n")
    else:
        record.unlink(missing_ok=True)  # a model directory is whole: nothing to load under it
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    if image_processor is not None:
        image_processor.save_pretrained(directory)
    if qformer_tokenizer is not None:
        qformer_tokenizer.save_pretrained(str(directory / QFORMER_TOKENIZER_DIR))
    return directory


def _keeps_llm(model: Any, include_llm: bool | None) -> bool:
    if not hasattr(model, "language_model"):
        return False
    named = bool(model.config.text_name_or_path)
    if include_llm is False and not named:
        raise ValueError("include_llm=False, but the config names no LLM to load it from: it would be lost")
    if include_llm is not None:
        return include_llm
    frozen = all(param.stop_gradient for param in model.language_model.parameters())
    return not (named and frozen)


def stable_reference(name_or_path: str) -> str:
    """A local path as an absolute one (a relative path means nothing from another working directory); a known
    name or Hub id as it is."""
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.exists() else name_or_path
