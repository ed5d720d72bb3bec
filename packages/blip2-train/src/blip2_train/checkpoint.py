"""What goes into checkpoints and the final model directory, and how a save is made atomic.

- A checkpoint (``checkpoint-N``) is a model directory of the weights training changes (blip2-core's
  ``save_pretrained``: model.safetensors, config.json, tokenizer and image-processor files, and
  ``blip2_checkpoint.json`` naming the models it was trained from), next to the optimizer, scheduler, RNG and
  trainer state PaddleNLP writes; the frozen ViT and LLM come from those models, so they are never copied into
  every checkpoint, and ``from_pretrained(checkpoint-N)`` loads the whole model.
- A checkpoint is written under ``<output_dir>/.staging`` and renamed into place when complete, so a process
  killed during a save leaves no ``checkpoint-N`` for ``--resume_from_checkpoint`` to pick up.
- The final ``output_dir`` is a model directory ``from_pretrained`` loads from anywhere: everything but a frozen
  LLM that the config names by a known name, a Hub id or an absolute path. ``training_complete.json``, written
  after it, marks it complete and names the step it is from: a rerun that resumes has nothing to do.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paddle
from paddle import nn

COMPLETE_MARKER = "checkpoint_complete.json"
FINISHED_MARKER = "training_complete.json"  # in output_dir, beside the final model written from that step
STAGING_DIR = ".staging"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
logger = logging.getLogger(__name__)


def trainable_state_dict(model: nn.Layer) -> dict[str, paddle.Tensor]:
    return {name: param for name, param in model.named_parameters() if not param.stop_gradient}


@dataclass
class ModelFiles:
    """What every directory a run writes carries beside the weights, so that it loads on its own: the text and
    image preprocessing, and for a checkpoint the models (names or paths) its weights go over."""

    tokenizer: Any = None
    image_processor: Any = None
    qformer_tokenizer: Any = None
    weights_from: list[str] = field(default_factory=list)


def save_checkpoint_model(model: nn.Layer, directory: str | os.PathLike, files: ModelFiles) -> Path:
    """A checkpoint's model: the trained weights over ``files.weights_from`` (blip2-core's ``save_pretrained``);
    loads with ``from_pretrained`` as the whole model, and resumes training."""
    from blip2_core.loading.saving import save_pretrained

    return save_pretrained(
        model,
        directory,
        files.tokenizer,
        files.image_processor,
        qformer_tokenizer=files.qformer_tokenizer,
        weights_from=files.weights_from,
    )


def save_final_model(model: nn.Layer, directory: str | os.PathLike, files: ModelFiles) -> Path:
    """The final model directory (blip2-core's ``save_pretrained``): complete, but for a frozen LLM that its
    config names by a resolvable name or an absolute path."""
    from blip2_core.loading.saving import save_pretrained

    return save_pretrained(
        model, directory, files.tokenizer, files.image_processor, qformer_tokenizer=files.qformer_tokenizer
    )


def load_weights(model: nn.Layer, path: str | os.PathLike, require_all_trainable: bool) -> list[str]:
    """Set ``model``'s weights from a checkpoint (``checkpoint-N``), a model directory or a checkpoint file of any
    layout blip2-core reads (ours, HF, LAVIS, PaddleMIX; pickles through its restricted unpickler).

    Every trainable weight must be there (a partial start would train on random values without a word); with
    ``require_all_trainable`` (resume) every weight must also be the model's, otherwise weights the model lacks
    (a stage-1 model's heads given to stage 2) are skipped with a warning. Returns the names loaded; a shape
    mismatch is an error naming the file."""
    from blip2_core.loading.pretrained import load_weights_over

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint file or directory there")
    loaded, report = load_weights_over(model, path, layout="native" if require_all_trainable else None)
    if report.unexpected and require_all_trainable:
        raise ValueError(f"{path}: weights the model does not have: {report.unexpected[:8]}")
    if report.unexpected:
        logger.warning(
            "%s: %d weights the model does not have, skipped: %s", path, len(report.unexpected), report.unexpected[:8]
        )
    missing = sorted(set(trainable_state_dict(model)) & set(report.missing))
    if missing:
        raise ValueError(
            f"{path}: {len(missing)} trainable weights missing ({', '.join(missing[:8])}): training would start "
            f"them from random values"
        )
    return loaded


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


def checkpoint_step(directory: str | os.PathLike) -> int:
    """The optimizer step a checkpoint was saved at (its completion marker, else its ``checkpoint-N`` name)."""
    directory = Path(directory)
    marker = directory / COMPLETE_MARKER
    if marker.is_file():
        return int(json.loads(marker.read_text())["global_step"])
    match = _CHECKPOINT.match(directory.name)
    if match is None:
        raise ValueError(f"{directory}: not a checkpoint-N directory and no {COMPLETE_MARKER} in it")
    return int(match.group(1))


def has_finite_weights(directory: str | os.PathLike) -> bool:
    """Whether every floating-point weight in the directory's safetensors files (one, or shards) is finite."""
    from blip2_core.checkpoint_io.safetensors_reader import read_safetensors

    files = sorted(Path(directory).glob("*.safetensors"))
    for path in files:  # memory-mapped: one tensor in memory at a time
        for array in read_safetensors(path).values():
            if array.dtype.kind in "fc" and not np.isfinite(array).all():
                return False
    return bool(files)


def resumable_checkpoints(output_dir: str | os.PathLike, before_step: int) -> Iterator[Path]:
    """Complete ``checkpoint-N`` with N < ``before_step`` whose weights are all finite, newest first.

    A stop at step s (non-finite loss, gradients or weights, computed from the weights after step s - 1) passes
    ``before_step = s - 1``: checkpoint-(s - 1) holds the weights that failed, and resuming from it fails again.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return
    found = sorted(
        ((int(m.group(1)), p) for p in output_dir.iterdir() if (m := _CHECKPOINT.match(p.name)) and is_complete(p)),
        reverse=True,
    )
    for step, path in found:
        if step >= before_step:
            continue
        if has_finite_weights(path):
            yield path
        else:
            logger.warning("%s: non-finite weights, not a checkpoint to resume from", path)


def mark_finished(output_dir: str | os.PathLike, step: int) -> None:
    """Written after the final model: it is complete, and from optimizer step ``step``."""
    path = Path(output_dir) / FINISHED_MARKER
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"global_step": step}) + "\n")
    os.replace(tmp, path)


def finished_step(output_dir: str | os.PathLike) -> int | None:
    """The step of the complete final model in ``output_dir`` (see ``mark_finished``), or None."""
    path = Path(output_dir) / FINISHED_MARKER
    return int(json.loads(path.read_text())["global_step"]) if path.is_file() else None


def clear_finished(output_dir: str | os.PathLike) -> None:
    """Training starts: the final model in ``output_dir`` (if any) is about to be replaced."""
    (Path(output_dir) / FINISHED_MARKER).unlink(missing_ok=True)


def clear_staging(output_dir: str | os.PathLike) -> None:
    """Remove what a killed save left half-written."""
    shutil.rmtree(Path(output_dir) / STAGING_DIR, ignore_errors=True)
