"""blip2-shapes: the project's default BLIP-2 model, its model card and the recipe that trains it.

The files are in ``model/`` (captions), ``model/vqa/`` (answers) and ``model/stage1/`` (retrieval); blip2-core
finds them when this package is installed (``blip2-predict --model blip2-shapes``, or no ``--model``). The
recipe (``blip2-shapes train``) is in :mod:`blip2_shapes.recipe`.
"""

from __future__ import annotations

from pathlib import Path

MODEL_DIRECTORY = Path(__file__).resolve().parent / "model"

__all__ = ["MODEL_DIRECTORY"]
