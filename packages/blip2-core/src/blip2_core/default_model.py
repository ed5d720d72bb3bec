"""Where the embedded default model lives: ``blip2-shapes``, trained by this repository (``nox -s demo-train``).

It sits inside the package (``blip2_core/default_model/``), so an editable install from a clone finds it with
no network and no cache. One model per task, as BLIP-2's checkpoints are published: captions from the stage-2
model there, answers from the VQA-fine-tuned model in ``default_model/vqa/``, retrieval from the stage-1 model in
``default_model/stage1/``.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL_NAME = "blip2-shapes"
_DIRECTORY = Path(__file__).resolve().parent / "default_model"
STAGE1_SUBDIRECTORY, VQA_SUBDIRECTORY = "stage1", "vqa"
_REQUIRED = ("config.json", "model.safetensors")


def _if_complete(path: Path) -> Path | None:
    return path if all((path / name).is_file() for name in _REQUIRED) else None


def default_model_path() -> Path | None:
    """The default model's directory, or None when this installation does not carry it (e.g. a wheel built
    without the model files)."""
    return _if_complete(_DIRECTORY)


def model_or_default(name_or_path: str | None, question: bool = False) -> str | None:
    """What a command runs: the model it was given, else the embedded default (None if neither exists): its
    VQA model when the command answers a ``question``, its captioning model otherwise."""
    if name_or_path:
        return name_or_path
    path = default_model_path()
    if path is not None and question:
        path = default_vqa_path() or path
    return str(path) if path is not None else None


def default_stage1_path() -> Path | None:
    """The default model's stage-1 directory (ITC/ITM heads, for retrieval), or None."""
    return _if_complete(_DIRECTORY / STAGE1_SUBDIRECTORY)


def default_vqa_path() -> Path | None:
    """The default model's VQA-fine-tuned directory (what ``--question`` runs without ``--model``), or None."""
    return _if_complete(_DIRECTORY / VQA_SUBDIRECTORY)
