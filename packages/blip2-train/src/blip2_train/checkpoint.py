"""What goes into checkpoints and the final model directory, and how a save is made atomic.

- A checkpoint (``checkpoint-N``) holds only the trainable weights (``model_state.pdparams``) next to the
  optimizer, scheduler, RNG and trainer state PaddleNLP writes; the frozen ViT and LLM come from the starting
  model on resume, so they are never copied into every checkpoint.
- A checkpoint is written under ``<output_dir>/.staging`` and renamed into place when complete, so a process
  killed during a save leaves no ``checkpoint-N`` for ``--resume_from_checkpoint`` to pick up.
- The final ``output_dir`` is a model directory ``from_pretrained`` loads: config.json + model.safetensors with
  everything but a frozen LLM that the config names (``text_name_or_path``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import paddle
from paddle import nn
from safetensors.numpy import save_file

WEIGHTS_NAME = "model_state.pdparams"  # PaddleNLP's name for a checkpoint's model weights
COMPLETE_MARKER = "checkpoint_complete.json"
STAGING_DIR = ".staging"
SAFETENSORS_NAME = "model.safetensors"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
logger = logging.getLogger(__name__)


def trainable_state_dict(model: nn.Layer) -> dict[str, paddle.Tensor]:
    return {name: param for name, param in model.named_parameters() if not param.stop_gradient}


def save_trainable(model: nn.Layer, directory: str | os.PathLike) -> Path:
    """The trainable weights as ``model_state.pdparams`` (written to a temporary name, then renamed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / WEIGHTS_NAME
    tmp = path.with_name(path.name + ".tmp")
    paddle.save({k: v.detach() for k, v in trainable_state_dict(model).items()}, str(tmp))
    os.replace(tmp, path)
    return path


def load_weights(model: nn.Layer, directory: str | os.PathLike, require_all_trainable: bool) -> list[str]:
    """Set ``model``'s weights from a checkpoint (``model_state.pdparams``) or a model directory (safetensors).

    With ``require_all_trainable`` (resume) every trainable weight must be there and every weight must be the
    model's; otherwise weights the model lacks (a stage-1 model's heads given to stage 2) are skipped with a
    warning. Returns the names loaded; a shape mismatch is an error naming the file.
    """
    directory = Path(directory)
    if (directory / WEIGHTS_NAME).is_file():
        path = directory / WEIGHTS_NAME
        state = paddle.load(str(path), return_numpy=True)
    elif (directory / SAFETENSORS_NAME).is_file():
        from safetensors.numpy import load_file

        path = directory / SAFETENSORS_NAME
        state = load_file(str(path))
    else:
        raise FileNotFoundError(f"{directory}: no {WEIGHTS_NAME} or {SAFETENSORS_NAME} to load weights from")
    params = model.state_dict()
    unknown = sorted(set(state) - set(params))
    if unknown and require_all_trainable:
        raise ValueError(f"{path}: weights the model does not have: {unknown[:8]}")
    if unknown:
        logger.warning("%s: %d weights the model does not have, skipped: %s", path, len(unknown), unknown[:8])
        state = {k: v for k, v in state.items() if k in params}
    if require_all_trainable:
        missing = sorted(set(trainable_state_dict(model)) - set(state))
        if missing:
            raise ValueError(f"{path}: trainable weights missing from the checkpoint: {missing[:8]}")
    for name, value in state.items():
        target = params[name]
        value = np.asarray(value)
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(f"{path}: shape mismatch for {name}: {tuple(value.shape)} vs model {tuple(target.shape)}")
        target.set_value(paddle.to_tensor(value).astype(target.dtype))
    return sorted(state)


def save_final_model(
    model: Any, directory: str | os.PathLike, tokenizer: Any = None, image_processor: Any = None
) -> Path:
    """A complete model directory for ``from_pretrained``; a frozen LLM named in the config is left out."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config
    skip_llm = (
        hasattr(model, "language_model")
        and bool(config.text_name_or_path)
        and all(p.stop_gradient for p in model.language_model.parameters())
    )
    state = {
        name: tensor.astype("float32").numpy()
        for name, tensor in model.state_dict().items()
        if not (skip_llm and name.startswith("language_model."))
    }
    tmp = directory / (SAFETENSORS_NAME + ".tmp")
    save_file(state, str(tmp), metadata={"format": "np"})
    os.replace(tmp, directory / SAFETENSORS_NAME)
    config.save(directory)
    if hasattr(model, "generation_config"):
        fields = dataclasses.asdict(model.generation_config)
        fields["eos_token_id"] = list(fields["eos_token_id"])
        (directory / "generation_config.json").write_text(json.dumps(fields, indent=2) + "\n")
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    if image_processor is not None:
        image_processor.save_pretrained(directory)
    return directory


def mark_complete(directory: str | os.PathLike, step: int) -> None:
    """Last file of a checkpoint, flushed to disk before the folder is renamed into place."""
    path = Path(directory) / COMPLETE_MARKER
    with open(path, "w") as f:
        json.dump({"global_step": step}, f)
        f.flush()
        os.fsync(f.fileno())


def is_complete(directory: str | os.PathLike) -> bool:
    return (Path(directory) / COMPLETE_MARKER).is_file()


def publish(staged: str | os.PathLike, final: str | os.PathLike) -> None:
    """Move a complete staged checkpoint into place (replacing an older one of the same step)."""
    final = Path(final)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staged, final)
    fd = os.open(final.parent, os.O_RDONLY)  # make the rename itself durable
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def last_complete_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The complete ``checkpoint-N`` with the largest N, or None."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in output_dir.iterdir()
        if (m := _CHECKPOINT.match(p.name)) and p.is_dir() and is_complete(p)
    ]
    return max(found)[1] if found else None


def clear_staging(output_dir: str | os.PathLike) -> None:
    """Remove what a killed save left half-written."""
    shutil.rmtree(Path(output_dir) / STAGING_DIR, ignore_errors=True)
