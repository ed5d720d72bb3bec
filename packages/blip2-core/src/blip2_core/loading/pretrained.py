"""``from_pretrained`` / ``save_pretrained``: models by name or path, in any checkpoint layout.

A name is looked up in the table of known names (``model_names``), else taken as a local path or a Hub repo
id (``hub``). A directory's config.json says what to build; its weights may sit beside it (ours, HF's,
PaddleMIX's ``model_state.pdparams``) or be composed from elsewhere, as PaddleMIX's config.json does
(``vision_and_bridge_name_or_path``, or ``vision_name_or_path`` + ``bridge_name_or_path``, and ``text_config``
naming the LLM).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from blip2_eva_vit import fit_to_config
from blip2_qformer import LoadReport, QFormerForPretraining, assign_weights

from ..checkpoint_io import checkpoint_files, read_state_dict
from ..formats import convert_state_dict
from ..formats.hf import llm_from_hf
from ..model.config import Blip2Config
from ..model.generation import GenerationConfig
from ..model.text_config import TextConfig
from . import fetching, hub, model_names, weights_cache
from .default_model import embedded_model_path
from .precision import IMAGE_SIDE, compile_image_side, finish_cast, plan_precision

logger = logging.getLogger(__name__)
ModelT = TypeVar("ModelT")

CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
# In a training checkpoint (trainable weights only): the models, in order, whose weights it loads over.
CHECKPOINT_RECORD = "blip2_checkpoint.json"
# Hub repos often publish the same weights twice (safetensors and torch pickles): fetch the safetensors and
# the small files first, the pickles only where there are no safetensors.
SAFE_FILES = ("*.json", "*.safetensors", "*.txt", "*.model")
PICKLE_FILES = ("*.json", "*.pdparams", "*.bin", "*.pth")
OPT_NEWLINE = 50118  # "\n" in OPT's vocabulary: LAVIS's end of caption


@dataclasses.dataclass
class Source:
    """Where one part of the weights comes from."""

    path: Path
    layout: str | None = None
    trusted: bool = False  # named directly by the user, or trusted explicitly: pickles may be read


def _locate(name_or_path: str | os.PathLike, trust_pickle: bool) -> tuple[Source, model_names.ModelEntry | None]:
    text = os.fspath(name_or_path)
    embedded = embedded_model_path(text)
    if embedded is not None:  # blip2-shapes and its task folders, carried by this installation
        return Source(embedded, None, True), None
    entry = model_names.lookup(text)
    if entry is not None:
        if entry.vision != "eva-vit-g":  # before any download
            raise NotImplementedError(
                f"{entry.name}: {entry.description}; only EVA-ViT-g based BLIP-2 models are implemented"
            )
        return Source(fetching.fetch_entry(entry), entry.layout, trust_pickle or entry.is_url), entry
    local = Path(text).expanduser()
    if local.exists():
        return Source(local, None, True), None  # the user named this path: reading it is their call
    if model_names.is_misspelt_name(text):
        namespace = text.strip("/").split("/")[0]
        raise UnknownModelError(_unknown_name_message(text, f"not one of the known {namespace}/ names"))
    if "/" not in text.strip("/") and not hub.looks_like_a_path(text):
        raise UnknownModelError(
            _unknown_name_message(text, "not a known name, an existing file or directory, or a Hub repo id (org/name)")
        )
    try:
        path = hub.resolve(text, allow_patterns=list(SAFE_FILES))
        if path.is_dir() and not any(path.glob("*.safetensors")):
            path = hub.resolve(text, allow_patterns=list(PICKLE_FILES))
    except hub.ModelNotAvailableError as error:
        if not model_names.similar_names(text):
            raise
        hub_said = str(error).splitlines()[0]
        raise UnknownModelError(
            _unknown_name_message(text, f"not a known name, nor a Hub repo here ({hub_said})")
        ) from None
    return Source(path, None, trust_pickle), None


class NoLanguageModelError(ValueError):
    """A stage-2 model was asked for, and nothing names its LLM. ``source`` and ``reason`` let a CLI word it."""

    def __init__(self, source: str | os.PathLike, reason: str) -> None:
        self.source, self.reason = str(source), reason
        super().__init__(
            f"{source} names no LLM ({reason}): pass text_name_or_path= (e.g. 'facebook/opt-2.7b') or config="
        )


class UnknownModelError(hub.ModelNotAvailableError):
    """A model name that is neither known, nor a path, nor an available Hub repo; the message suggests names."""


def _unknown_name_message(name: str, why: str) -> str:
    similar = model_names.similar_names(name)
    guess = f"\n  did you mean {' or '.join(similar)}?" if similar else ""
    return f"no model {name!r}: {why}{guess}\n  `blip2-predict --list-models` lists the known names and their sources"


def _read(source: Source, files: list[Path] | None = None) -> dict[str, np.ndarray]:
    # bf16 weights stay bf16 words until each is set into its parameter: no float32 copy of a bf16 checkpoint.
    # Mapped copy-on-write: a CPU parameter takes a weight's memory as it is (assign_weights' share_memory).
    if files is not None:
        files += checkpoint_files(source.path)
    return read_state_dict(source.path, trust_pickle=source.trusted, keep_bfloat16=True, writable=True)


def _llm_weights(
    text_name_or_path: str, llm_type: str, trust_pickle: bool, files: list[Path] | None = None
) -> dict[str, np.ndarray]:
    source, _ = _locate(text_name_or_path, trust_pickle)
    sd = _read(source, files)
    if llm_type == "opt" and not any(k.startswith("model.") for k in sd):
        sd = {("model." + k if k.startswith("decoder.") else k): v for k, v in sd.items()}  # OPTModel checkpoints
    return {"language_model." + k: v for k, v in llm_from_hf(sd, llm_type).items()}


def _text_config(text_name_or_path: str) -> TextConfig:
    path = hub.resolve(text_name_or_path, allow_patterns=["config.json"])
    config_file = path / CONFIG_FILE if path.is_dir() else path
    try:
        return TextConfig.from_dict(json.loads(config_file.read_text()))
    except (ValueError, TypeError) as error:
        raise ValueError(f"{config_file}: not an OPT or T5 config.json ({error})") from None


def load_pretrained(
    model_class: type[ModelT],
    name_or_path: str | os.PathLike,
    config: Blip2Config | None = None,
    text_name_or_path: str | None = None,
    trust_pickle: bool = False,
    dtype: str | None = None,
    allow_missing_weights: bool = False,
) -> ModelT:
    """Build ``model_class`` (``Blip2ForConditionalGeneration`` or ``Blip2Qformer``) and load its weights.

    A weight the model has and no source gives is an error (``MissingWeightsError``) unless
    ``allow_missing_weights``: a model never runs on random weights by accident. A training checkpoint
    (``checkpoint-N``, trainable weights only) loads over the models its ``blip2_checkpoint.json`` names."""
    stage1 = issubclass(model_class, QFormerForPretraining)  # the Q-Former keeps its text parts and heads
    config_class = getattr(model_class, "config_class", Blip2Config)  # a model on the same parts reads its own
    plan = plan_precision(dtype, stage1=stage1)  # before anything is read
    source, entry = _locate(name_or_path, trust_pickle)
    config_file = source.path / CONFIG_FILE if source.path.is_dir() else None
    if config is not None:
        config = copy.deepcopy(config)  # filled in below; the caller's object stays as it was
    elif config_file is not None and config_file.exists():
        config = config_class.from_file(config_file, stage1=stage1)
    elif stage1:
        config = Blip2Config(qformer_config=dataclasses.replace(Blip2Config().qformer_config, has_text_input=True))
    elif entry is None and text_name_or_path is None:
        raise NoLanguageModelError(source.path, "it has no config.json")
    else:
        config = config_class()
    if entry is not None:
        config = _apply_entry(config, entry, stage1)
    if text_name_or_path:
        config.text_name_or_path = text_name_or_path
    if config.text_name_or_path:
        config.text_name_or_path = llm_reference(config.text_name_or_path, source.path)
    if not stage1 and config.text_config is None:
        if not config.text_name_or_path:
            raise NoLanguageModelError(name_or_path, "its config.json has no text_config or text_name_or_path")
        config.text_config = _text_config(config.text_name_or_path)

    # Weights first, then the model: a file that cannot be read (untrusted, incomplete, unknown layout) is
    # reported at once, not after a ViT-g is built. Safetensors are memory-mapped, so this costs no extra memory.
    heads = config.vision_config.num_heads
    parts = _weight_sources(source, config, entry, trust_pickle)

    def converted(files: list[Path] | None = None) -> dict[str, np.ndarray]:
        weights: dict[str, np.ndarray] = {}
        for part in parts:
            state = _read(part, files)
            weights.update(convert_state_dict(state, part.layout, num_heads=heads, llm_type=config.llm_type))
        if not stage1 and not any(k.startswith("language_model.") for k in weights) and config.text_name_or_path:
            weights.update(_llm_weights(config.text_name_or_path, config.llm_type, trust_pickle, files))
        if stage1:  # stage-1 models name the Q-Former heads at the top level, as QFormerForPretraining does
            weights = {k: v for k, v in weights.items() if not k.startswith(("language_", "opt_", "t5_"))}
        return _fit_vision(weights, config)

    files: list[Path] = []
    weights = converted(files)
    with _without_random_init():  # every parameter gets the checkpoint's values: no memory, no time for others
        model = model_class(config)
    if not plan.on_gpu:  # what CPU parameters cannot take as it is comes converted from the cache, memory-mapped
        recipe = {"layouts": [part.layout for part in parts], "heads": heads, "llm": config.llm_type}
        weights = weights_cache.for_model(model, weights, files, recipe, converted)
    # CPU bf16: the image side is loaded and compiled first, and its dygraph weights freed before the LLM's are
    # set, so the two never add up (see ``precision``).
    parts = (IMAGE_SIDE, ("language_model",)) if plan.compile_image_side else (None,)
    report = LoadReport()
    dtypes = plan.parameter_dtypes(model)
    for children in parts:
        _assign_part(model, weights, children, str(name_or_path), dtypes, report)
        if children == IMAGE_SIDE:
            _check_complete(model, report, name_or_path, allow_missing_weights)  # before the graph is exported
            compile_image_side(model, plan)
    _check_complete(model, report, name_or_path, allow_missing_weights)
    report.log(str(name_or_path))
    model.load_report = report
    if not stage1:
        model.generation_config = _generation_config(source.path, model.generation_config, config, entry)
    finish_cast(model, plan)  # buffers; the parameters are already in their dtype
    model.eval()
    return model


class MissingWeightsError(ValueError):
    """The checkpoint lacks weights the model has: loading it would run them on random values."""


def _check_complete(model: Any, report: LoadReport, source: str | os.PathLike, allowed: bool) -> None:
    missing = [k for k in report.missing if not k.startswith(model.optional_weights)]
    if not missing or allowed:
        return
    shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    raise MissingWeightsError(
        f"{source} lacks {len(missing)} weights of the model ({shown}): it would run them on random values. "
        f"Load the complete model (a training checkpoint-N holds only the trained weights and loads over the model "
        f"its blip2_checkpoint.json names), or pass allow_missing_weights=True to load it anyway"
    )


def llm_reference(text_name_or_path: str, model_directory: Path) -> str:
    """What a config's LLM reference means: a path relative to the model's own directory (older files), an
    absolute path, or a known name / Hub id, as it is. A path that no longer exists is an error saying so."""
    text = os.fspath(text_name_or_path)
    path = Path(text).expanduser()
    if not path.is_absolute() and model_directory.is_dir() and (model_directory / path).exists():
        return str((model_directory / path).resolve())
    if path.is_absolute() and not path.exists():
        raise FileNotFoundError(
            f"the LLM at {text} is gone (moved or deleted since the model was saved): pass its new place as "
            f"text_name_or_path= (blip2-predict --llm, blip2-train --text_model_name_or_path)"
        )
    return text


@contextlib.contextmanager
def _without_random_init() -> Iterator[None]:
    """Build a model whose parameters hold no memory and no random values until set (``paddle.LazyGuard``;
    paddlenlp's LLMs also initialise their weights themselves unless told not to)."""
    import paddle

    with contextlib.ExitStack() as stack:
        stack.enter_context(paddle.LazyGuard())
        if "paddlenlp" in sys.modules or importlib.util.find_spec("paddlenlp") is not None:
            from paddlenlp.transformers.model_utils import no_init_weights

            stack.enter_context(no_init_weights())
        yield


def _assign_part(
    model: Any,
    weights: dict[str, np.ndarray],
    children: tuple[str, ...] | None,
    source: str,
    dtypes: dict[str, str],
    report: LoadReport,
) -> None:
    """Set the weights of ``model``'s top-level ``children`` (all of it when None), taking them out of ``weights``;
    adds what it missed to ``report``. Where it is the last part, keys left over are unexpected."""
    if children is None:
        part = assign_weights(model, weights, source, dtypes, consume=True, share_memory=True)
        report.missing += part.missing
        report.unexpected += part.unexpected
        return
    for child in children:
        prefix = child + "."
        own = {k[len(prefix) :]: weights.pop(k) for k in list(weights) if k.startswith(prefix)}
        plan = {k[len(prefix) :]: v for k, v in dtypes.items() if k.startswith(prefix)}
        part = assign_weights(getattr(model, child), own, source, plan, consume=True, share_memory=True)
        report.missing += [prefix + k for k in part.missing]
        report.unexpected += [prefix + k for k in part.unexpected]
    if "language_model" in children:  # the last part
        report.unexpected += list(weights)
        weights.clear()


def _fit_vision(weights: dict[str, np.ndarray], config: Blip2Config) -> dict[str, np.ndarray]:
    """EVA-CLIP-g's extra block dropped, positions resized to the configured image size (e.g. 224 -> 364)."""
    prefix = "vision_model."
    vision = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
    if not vision:
        return weights
    fitted, notes = fit_to_config(vision, config.vision_config)
    for note in notes:
        logger.info("vision encoder: %s", note)
    return {
        **{k: v for k, v in weights.items() if not k.startswith(prefix)},
        **{prefix + k: v for k, v in fitted.items()},
    }


def _apply_entry(config: Blip2Config, entry: model_names.ModelEntry, stage1: bool) -> Blip2Config:
    if entry.vision != "eva-vit-g":
        raise NotImplementedError(
            f"{entry.name}: {entry.description}; only EVA-ViT-g based BLIP-2 models are implemented"
        )
    vision = dataclasses.replace(config.vision_config, image_size=entry.image_size)
    config = dataclasses.replace(config, vision_config=vision, weights_layout=entry.layout)
    if entry.llm_repo and not config.text_name_or_path:
        config.text_name_or_path = entry.llm_repo
    if stage1 and not config.qformer_config.has_text_input:
        config.qformer_config = dataclasses.replace(config.qformer_config, has_text_input=True)
    return config


def _weight_sources(
    source: Source, config: Blip2Config, entry: model_names.ModelEntry | None, trust: bool
) -> list[Source]:
    """The checkpoints to read, in order; later ones fill in what earlier ones lack."""
    parts: list[Source] = []
    for base in checkpoint_bases(source.path):  # a training checkpoint: the models it was trained from, first
        base_source, base_entry = _locate(base, trust)
        base_config = base_source.path / CONFIG_FILE if base_source.path.is_dir() else None
        composed = Blip2Config.from_file(base_config) if base_config is not None and base_config.exists() else config
        parts += _weight_sources(base_source, composed, base_entry, trust)
    for required in entry.requires if entry else ():
        parts.append(_locate(required, trust)[0])
    if config.vision_and_bridge_name_or_path:
        parts.append(_locate(config.vision_and_bridge_name_or_path, trust)[0])
    else:
        for name in (config.vision_name_or_path, config.bridge_name_or_path):
            if name:
                parts.append(_locate(name, trust)[0])
    if source.path.is_file() or _has_weights(source.path):
        parts.append(dataclasses.replace(source, layout="native") if checkpoint_bases(source.path) else source)
    if not parts:
        raise FileNotFoundError(f"no weights found in {source.path} and its config.json names none")
    return parts


def checkpoint_bases(directory: Path) -> list[str]:
    """The models a training checkpoint's weights go over (its ``blip2_checkpoint.json``); [] for a model."""
    record = directory / CHECKPOINT_RECORD if directory.is_dir() else None
    if record is None or not record.is_file():
        return []
    try:
        bases = json.loads(record.read_text())["weights_from"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{record}: not a checkpoint record with weights_from ({error})") from None
    if not isinstance(bases, list) or not all(isinstance(base, str) for base in bases):
        raise ValueError(f"{record}: weights_from must be a list of model names or paths")
    return bases


def _has_weights(directory: Path) -> bool:
    return any(any(directory.glob(pattern)) for pattern in ("*.safetensors", "*.pdparams", "pytorch_model*.bin"))


def _generation_config(
    directory: Path, default: GenerationConfig, config: Blip2Config, entry: model_names.ModelEntry | None
) -> GenerationConfig:
    """HF's generation_config.json where there is one; LAVIS's "\\n" end of caption for its OPT models."""
    values: dict[str, Any] = {}
    file = directory / GENERATION_CONFIG_FILE if directory.is_dir() else None
    if file is not None and file.exists():
        saved = json.loads(file.read_text())
        known = {f.name for f in dataclasses.fields(GenerationConfig)}
        values = {k: v for k, v in saved.items() if k in known and v is not None}
    elif (
        config.llm_type == "opt"
        and (config.weights_layout in ("lavis", "paddlemix") or entry is not None)
        and config.text_config.vocab_size > OPT_NEWLINE  # OPT's own vocabulary, where 50118 is "\n"
    ):
        values = {"eos_token_id": (OPT_NEWLINE,)}
    return dataclasses.replace(default, **values) if values else default


def read_model_weights(
    path: str | os.PathLike, config: Blip2Config, *, stage1: bool, layout: str | None = None
) -> dict[str, np.ndarray]:
    """One checkpoint file or model directory, in any layout ``from_pretrained`` reads (ours, HF, LAVIS,
    PaddleMIX), as weights under our model's names; for weights loaded into a model that already exists
    (blip2-train's ``--load_model_path`` and resume). Pickles are read with the restricted unpickler."""
    source = Source(Path(path), layout, trusted=True)  # named by the user; the unpickler is restricted anyway
    heads = config.vision_config.num_heads
    weights = convert_state_dict(_read(source), layout, num_heads=heads, llm_type=config.llm_type)
    if stage1:
        weights = {k: v for k, v in weights.items() if not k.startswith(("language_", "opt_", "t5_"))}
    return _fit_vision(weights, config)


def load_weights_over(model: Any, path: str | os.PathLike, layout: str | None = None) -> tuple[list[str], LoadReport]:
    """Set the weights ``path`` holds (any layout ``read_model_weights`` reads) over a loaded ``model``: PaddleMIX's
    ``--load_model_path`` on blip2-predict and blip2-eval, and blip2-train's ``--load_model_path`` and resume.
    Returns the names set and the report (what the file lacked, what the model lacks); a file that gives none of
    the model's weights is an error (``ValueError``), as is a shape mismatch."""
    stage1 = not hasattr(model, "language_model")
    weights = read_model_weights(path, model.config, stage1=stage1, layout=layout)
    given = len(weights)
    report = assign_weights(model, weights, str(path), consume=True)
    loaded = sorted(set(model.state_dict()) - set(report.missing))
    if not loaded:
        raise ValueError(f"{path}: none of its {given} weights is one of this model's: is it a model of another kind?")
    return loaded, report
