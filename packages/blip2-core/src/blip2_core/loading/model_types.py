"""Which model class a checkpoint builds: its config.json's ``model_type``, looked up among the model types installed.

BLIP-2 is built in. A package that builds another vision-language model on the same parts (EVA-ViT, the Q-Former,
the LLM bridge, loading and decoding) registers a ``ModelType`` under the ``blip2_core.model_types`` entry-point
group; ``load_bundle`` (and so blip2-predict, blip2-serve, blip2-eval) then loads its checkpoints, and
``blip2-predict --list-models`` lists its known names. Paddle-free: the command-line parsers import it.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from ..model.generation_settings import TaskDefaults
from .model_names import ModelEntry

ENTRY_POINT_GROUP = "blip2_core.model_types"
DEFAULT_MODEL_TYPE = "blip-2"


@dataclass(frozen=True)
class ModelType:
    """A kind of model the tools load: its config.json ``model_type`` names (ours first, then e.g. HF's), its
    stage-2 model class as "module:attribute" (imported on first use, so listing names stays quick), its known
    model names, and its decoding defaults per (task, LLM type) where they differ from BLIP-2's."""

    name: str
    model_class: str
    config_names: tuple[str, ...] = ()
    model_entries: tuple[ModelEntry, ...] = ()
    task_defaults: dict[tuple[str, str], TaskDefaults] = field(default_factory=dict, compare=False)

    def load_class(self) -> type:
        module, _, attribute = self.model_class.partition(":")
        return getattr(importlib.import_module(module), attribute)


BLIP2 = ModelType(DEFAULT_MODEL_TYPE, "blip2_core.model.modeling:Blip2ForConditionalGeneration", ("blip-2", "blip2"))


@functools.lru_cache(maxsize=1)
def installed() -> tuple[ModelType, ...]:
    """BLIP-2, then every model type an installed package registers (in entry-point name order)."""
    found = [BLIP2]
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        value = point.load()
        if not isinstance(value, ModelType):
            raise TypeError(
                f"entry point {point.name} ({point.value}) is not a blip2_core.loading.model_types.ModelType"
            )
        found.append(value)
    return tuple(found)


def by_config_name(config_model_type: str | None) -> ModelType:
    """The model type whose config.json says ``config_model_type`` (BLIP-2 for None or an unknown one: the config
    reader then says what it cannot read)."""
    for model_type in installed():
        if config_model_type in (model_type.name, *model_type.config_names):
            return model_type
    return BLIP2


def for_checkpoint(name_or_path: str | os.PathLike) -> ModelType:
    """The model type of a known name (its table entry) or of a local directory (its config.json); BLIP-2 for
    anything else (a Hub id is resolved by the loader, whose config reader checks it)."""
    text = os.fspath(name_or_path)
    for model_type in installed():
        if any(text in (entry.name, *entry.aliases) for entry in model_type.model_entries):
            return model_type
    config_file = Path(text).expanduser() / "config.json"
    if config_file.is_file():
        try:
            values: Any = json.loads(config_file.read_text())
        except ValueError:
            return BLIP2
        return by_config_name(values.get("model_type") if isinstance(values, dict) else None)
    return BLIP2


def extra_model_entries() -> tuple[ModelEntry, ...]:
    """The known names the installed model types add to BLIP-2's table."""
    return tuple(entry for model_type in installed()[1:] for entry in model_type.model_entries)
