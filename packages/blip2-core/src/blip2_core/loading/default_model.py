"""Where the default model lives: ``blip2-shapes``, trained by this repository, a package of its own.

blip2-core carries no weights: the model is the ``blip2-shapes`` package (``packages/blip2-shapes``), found here
when installed, with no network and no cache. Only its files are read (``blip2_shapes/model/``); nothing of its
code is imported, so the dependency stays one-way (blip2-shapes needs blip2-core, not the reverse). One model per
task, as BLIP-2's checkpoints are published: captions from the stage-2 model there, answers from the
VQA-fine-tuned model in ``model/vqa/``, retrieval from the stage-1 model in ``model/stage1/``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model_names import ModelEntry

DEFAULT_MODEL_NAME = "blip2-shapes"
PACKAGE = "blip2_shapes"
INSTALL_HINT = "pip install blip2-shapes (from a clone of the repository: pip install -e packages/blip2-shapes)"
STAGE1_SUBDIRECTORY, VQA_SUBDIRECTORY = "stage1", "vqa"
_REQUIRED = ("config.json", "model.safetensors")


def model_files_directory() -> Path | None:
    """The installed blip2-shapes package's ``model/`` folder, or None when the package is not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _if_complete(path: Path | None) -> Path | None:
    if path is None:
        return None
    return path if all((path / name).is_file() for name in _REQUIRED) else None


def _in_package(subdirectory: str) -> Path | None:
    root = model_files_directory()
    return _if_complete(root / subdirectory if root is not None else None)


def default_model_path() -> Path | None:
    """The default model's directory, or None when blip2-shapes is not installed."""
    return _in_package("")


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
    path = _in_package(subdirectory)
    if path is None:
        root = model_files_directory()
        where = "is not installed" if root is None else f"is installed without its files ({root / subdirectory})"
        raise FileNotFoundError(f"{name}: the default model's package blip2-shapes {where}; {INSTALL_HINT}")
    return path


def default_stage1_path() -> Path | None:
    """The default model's stage-1 directory (ITC/ITM heads, for retrieval), or None."""
    return _in_package(STAGE1_SUBDIRECTORY)


def default_vqa_path() -> Path | None:
    """The default model's VQA-fine-tuned directory (what ``--question`` runs without ``--model``), or None."""
    return _in_package(VQA_SUBDIRECTORY)


def embedded_entries() -> list[ModelEntry]:
    """The embedded models as rows of the known-name table (``blip2-predict --list-models``); [] when this
    blip2-shapes is not installed."""
    from .model_names import ModelEntry

    kinds = {"": "stage2-caption", VQA_SUBDIRECTORY: "stage2-vqa", STAGE1_SUBDIRECTORY: "stage1"}
    what = {"": "captions", VQA_SUBDIRECTORY: "answers (VQA fine-tuned)", STAGE1_SUBDIRECTORY: "retrieval"}
    entries = []
    for name, subdirectory in EMBEDDED_NAMES.items():
        path = _in_package(subdirectory)
        if path is None:
            continue
        size = json.loads((path / "config.json").read_text())["vision_config"]["image_size"]
        entries.append(
            ModelEntry(
                name=name,
                kind=kinds[subdirectory],
                image_size=size,
                source="the blip2-shapes package",
                layout="native",
                description=f"the default model (synthetic shapes, trained by blip2-shapes train): {what[subdirectory]}",
                llm=None if subdirectory == STAGE1_SUBDIRECTORY else "shapes-opt",
            )
        )
    return entries
