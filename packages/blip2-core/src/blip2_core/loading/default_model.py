"""Where the embedded default model lives: ``blip2-shapes``, trained by this repository (``nox -s demo-train``).

It sits inside the package (``blip2_core/default_model/``), so an editable install from a clone finds it with
no network and no cache. One model per task, as BLIP-2's checkpoints are published: captions from the stage-2
model there, answers from the VQA-fine-tuned model in ``default_model/vqa/``, retrieval from the stage-1 model in
``default_model/stage1/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model_names import ModelEntry

DEFAULT_MODEL_NAME = "blip2-shapes"
_DIRECTORY = Path(__file__).resolve().parent.parent / "default_model"
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


# The default model's names: the captioning model, and beside it the answering and retrieval models.
EMBEDDED_NAMES = {
    DEFAULT_MODEL_NAME: "",
    f"{DEFAULT_MODEL_NAME}/{VQA_SUBDIRECTORY}": VQA_SUBDIRECTORY,
    f"{DEFAULT_MODEL_NAME}/{STAGE1_SUBDIRECTORY}": STAGE1_SUBDIRECTORY,
}


def embedded_model_path(name: str) -> Path | None:
    """The folder of an embedded model name (``blip2-shapes``, ``blip2-shapes/vqa``, ``blip2-shapes/stage1``;
    case-insensitive), or None for any other name. A known name whose files this installation lacks is an error."""
    subdirectory = EMBEDDED_NAMES.get(name.strip().rstrip("/").lower())
    if subdirectory is None:
        return None
    path = _if_complete(_DIRECTORY / subdirectory)
    if path is None:
        raise FileNotFoundError(
            f"{name}: this installation of blip2-core does not carry the default model's files "
            f"({_DIRECTORY / subdirectory}); install blip2-core from a clone of the repository"
        )
    return path


def default_stage1_path() -> Path | None:
    """The default model's stage-1 directory (ITC/ITM heads, for retrieval), or None."""
    return _if_complete(_DIRECTORY / STAGE1_SUBDIRECTORY)


def default_vqa_path() -> Path | None:
    """The default model's VQA-fine-tuned directory (what ``--question`` runs without ``--model``), or None."""
    return _if_complete(_DIRECTORY / VQA_SUBDIRECTORY)


def embedded_entries() -> list[ModelEntry]:
    """The embedded models as rows of the known-name table (``blip2-predict --list-models``); [] when this
    installation does not carry them."""
    from .model_names import ModelEntry

    kinds = {"": "stage2-caption", VQA_SUBDIRECTORY: "stage2-vqa", STAGE1_SUBDIRECTORY: "stage1"}
    what = {"": "captions", VQA_SUBDIRECTORY: "answers (VQA fine-tuned)", STAGE1_SUBDIRECTORY: "retrieval"}
    entries = []
    for name, subdirectory in EMBEDDED_NAMES.items():
        path = _if_complete(_DIRECTORY / subdirectory)
        if path is None:
            continue
        size = json.loads((path / "config.json").read_text())["vision_config"]["image_size"]
        entries.append(
            ModelEntry(
                name=name,
                kind=kinds[subdirectory],
                image_size=size,
                source="embedded in blip2-core",
                layout="native",
                description=f"the default model (synthetic shapes, trained by nox -s demo-train): {what[subdirectory]}",
                llm=None if subdirectory == STAGE1_SUBDIRECTORY else "shapes-opt",
            )
        )
    return entries
