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

from blip2_eva_vit import cast_floating_point, fit_to_config
from blip2_qformer import LoadReport, QFormerForPretraining, assign_weights

from . import fetching, hub, model_names
from .checkpoint_io import read_state_dict, write_safetensors
from .config import Blip2Config
from .formats import convert_state_dict
from .formats.hf import llm_from_hf
from .generation import GenerationConfig
from .text_config import TextConfig

logger = logging.getLogger(__name__)
ModelT = TypeVar("ModelT")

CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
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


def _read(source: Source) -> dict[str, np.ndarray]:
    # bf16 weights stay bf16 words until each is set into its parameter: no float32 copy of a bf16 checkpoint
    return read_state_dict(source.path, trust_pickle=source.trusted, keep_bfloat16=True)  # warns for a pickle


def _llm_weights(text_name_or_path: str, llm_type: str, trust_pickle: bool) -> dict[str, np.ndarray]:
    source, _ = _locate(text_name_or_path, trust_pickle)
    sd = _read(source)
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
) -> ModelT:
    """Build ``model_class`` (``Blip2ForConditionalGeneration`` or ``Blip2Qformer``) and load its weights."""
    stage1 = issubclass(model_class, QFormerForPretraining)  # the Q-Former keeps its text parts and heads
    _check_dtype(dtype)  # before anything is read
    source, entry = _locate(name_or_path, trust_pickle)
    config_file = source.path / CONFIG_FILE if source.path.is_dir() else None
    if config is not None:
        config = copy.deepcopy(config)  # filled in below; the caller's object stays as it was
    elif config_file is not None and config_file.exists():
        config = Blip2Config.from_file(config_file, stage1=stage1)
    elif stage1:
        config = Blip2Config(qformer_config=dataclasses.replace(Blip2Config().qformer_config, has_text_input=True))
    elif entry is None and text_name_or_path is None:
        raise NoLanguageModelError(source.path, "it has no config.json")
    else:
        config = Blip2Config()
    if entry is not None:
        config = _apply_entry(config, entry, stage1)
    if text_name_or_path:
        config.text_name_or_path = text_name_or_path
    if not stage1 and config.text_config is None:
        if not config.text_name_or_path:
            raise NoLanguageModelError(name_or_path, "its config.json has no text_config or text_name_or_path")
        config.text_config = _text_config(config.text_name_or_path)

    # Weights first, then the model: a file that cannot be read (untrusted, incomplete, unknown layout) is
    # reported at once, not after a ViT-g is built. Safetensors are memory-mapped, so this costs no extra memory.
    heads = config.vision_config.num_heads
    weights: dict[str, np.ndarray] = {}
    for part in _weight_sources(source, config, entry, trust_pickle):
        weights.update(convert_state_dict(_read(part), part.layout, num_heads=heads, llm_type=config.llm_type))
    if not stage1 and not any(k.startswith("language_model.") for k in weights) and config.text_name_or_path:
        weights.update(_llm_weights(config.text_name_or_path, config.llm_type, trust_pickle))
    if stage1:  # stage-1 models name the Q-Former heads at the top level, as QFormerForPretraining does
        weights = {k: v for k, v in weights.items() if not k.startswith(("language_", "opt_", "t5_"))}
    weights = _fit_vision(weights, config)
    with _without_random_init():  # every parameter gets the checkpoint's values: no memory, no time for others
        model = model_class(config)
    compiled = dtype == "bfloat16" and not stage1 and not _on_gpu()
    # GPU: each weight goes straight into its parameter in ``dtype`` (no float32 copy of the model); CPU bf16: the
    # image side is compiled and its dygraph weights freed before the LLM's are read, so the two never add up.
    parts = (IMAGE_SIDE, ("language_model",)) if compiled else (None,)
    report = LoadReport()
    for children in parts:
        _assign_part(model, weights, children, str(name_or_path), _planned_dtypes(model, dtype), report)
        if children == IMAGE_SIDE:
            _cast_on_cpu(model, dtype)
    report.log(str(name_or_path))
    model.load_report = report
    if not stage1:
        model.generation_config = _generation_config(source.path, model.generation_config, config, entry)
    if dtype is not None and not compiled:
        cast(model, dtype)  # buffers, and a check; the parameters are already in dtype
    model.eval()
    return model


IMAGE_SIDE = ("vision_model", "qformer", "language_projection")


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
        part = assign_weights(model, weights, source, dtypes, consume=True)
        report.missing += part.missing
        report.unexpected += part.unexpected
        return
    for child in children:
        prefix = child + "."
        own = {k[len(prefix) :]: weights.pop(k) for k in list(weights) if k.startswith(prefix)}
        plan = {k[len(prefix) :]: v for k, v in dtypes.items() if k.startswith(prefix)}
        part = assign_weights(getattr(model, child), own, source, plan, consume=True)
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
    for required in entry.requires if entry else ():
        parts.append(_locate(required, trust)[0])
    if config.vision_and_bridge_name_or_path:
        parts.append(_locate(config.vision_and_bridge_name_or_path, trust)[0])
    else:
        for name in (config.vision_name_or_path, config.bridge_name_or_path):
            if name:
                parts.append(_locate(name, trust)[0])
    if source.path.is_file() or _has_weights(source.path):
        parts.append(source)
    if not parts:
        raise FileNotFoundError(f"no weights found in {source.path} and its config.json names none")
    return parts


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


def cast(model: Any, dtype: str) -> Any:
    """Vision encoder and LLM to ``dtype`` ("float16" / "bfloat16"); LayerNorms and the Q-Former stay float32.

    On a CPU, where paddle's dygraph has no bf16 matmul, "bfloat16" instead runs the image side (ViT, Q-Former,
    projection) through a compiled oneDNN bf16 graph (``compiled_image_encoder``, exported once and cached on
    disk), frees the dygraph ViT and Q-Former weights (``model.vision_model`` cannot run after; load in float32
    to train or to run it alone) and keeps the LLM in float32. "float16" on a CPU is refused: it has no kernels there.
    """
    if dtype == "float32":
        return model
    _check_dtype(dtype)
    if not _on_gpu():
        return _cast_on_cpu(model, dtype)
    for layer, keep in _cast_groups(model).values():
        cast_floating_point(layer, dtype, keep)
    return model


def _cast_groups(model: Any) -> dict[str, tuple[Any, tuple[type, ...]]]:
    """What ``cast`` changes on a GPU, by top-level name: the vision encoder but its LayerNorms, the LLM and the
    projection; the Q-Former stays float32."""
    from paddle import nn

    groups = {"vision_model": (model.vision_model, (nn.LayerNorm,))}
    if hasattr(model, "language_model"):
        groups["language_model"] = (model.language_model, ())
        groups["language_projection"] = (model.language_projection, ())
    return groups


def _planned_dtypes(model: Any, dtype: str | None) -> dict[str, str]:
    """The parameters ``cast`` would change, by state-dict key, and their new dtype: loading sets them so at once."""
    import paddle

    if dtype in (None, "float32") or not _on_gpu():
        return {}
    plan = {}
    for name, (layer, keep) in _cast_groups(model).items():
        for sub_name, sub in layer.named_sublayers(prefix=name, include_self=True):
            if isinstance(sub, keep):
                continue
            for param_name, param in sub.named_parameters(include_sublayers=False):
                if param.dtype == paddle.float32:
                    plan[f"{sub_name}.{param_name}"] = dtype
    return plan


def running_dtype(model: Any) -> str:
    """The dtype ``model`` computes in: "float32", "bfloat16", "float16", or, where its image side and LLM differ
    (bfloat16 on a CPU), e.g. "image bfloat16 (compiled oneDNN), LLM float32"."""
    from .compiled_image_encoder import CompiledImageEncoder

    compiled = model.__dict__.get("get_image_features")  # set on the instance by the CPU bf16 cast
    llm = _dtype_name(model.language_model.input_embeddings.weight.dtype)
    if isinstance(compiled, CompiledImageEncoder):
        return f"image {compiled.dtype} (compiled oneDNN), LLM {llm}"
    image = _dtype_name(model.vision_model.patch_embed.weight.dtype)
    return image if image == llm else f"image {image}, LLM {llm}"


def _dtype_name(dtype: Any) -> str:
    return str(dtype).replace("paddle.", "")


def _on_gpu() -> bool:
    import paddle

    return paddle.is_compiled_with_cuda() and "gpu" in str(paddle.get_device())


def _check_dtype(dtype: str | None) -> None:
    if dtype not in (None, "float32", "bfloat16", "float16"):
        raise ValueError(f"dtype={dtype!r}: expected float32, bfloat16 or float16")
    if dtype == "float16" and not _on_gpu():
        raise ValueError(f"dtype={dtype!r} needs a GPU (paddle has no {dtype} kernels on CPU); use bfloat16 or float32")


def _cast_on_cpu(model: Any, dtype: str) -> Any:
    _check_dtype(dtype)
    if not hasattr(model, "language_projection"):
        logger.warning("bfloat16 on CPU is for Blip2ForConditionalGeneration's image encoder; keeping float32")
        return model
    from .compiled_image_encoder import CompiledImageEncoder, cpu_bf16_support

    if cpu_bf16_support() is None:
        logger.warning("this CPU has neither avx512_bf16 nor AMX: bf16 is emulated and slower than float32")
    # An instance attribute: generate() and forward() reach the image side through get_image_features.
    # The projection's dygraph weights stay (they are small); the ViT's and Q-Former's go: the graph has a copy.
    model.get_image_features = CompiledImageEncoder.for_model(model, dtype, release_model_weights=True)
    return model


def save_pretrained(
    model: Any, directory: str | os.PathLike, tokenizer: Any = None, image_processor: Any = None
) -> Path:
    """Our config.json, generation_config.json and safetensors weights (+ tokenizer / image processor files)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config: Blip2Config = model.config
    config.save(directory)
    if hasattr(model, "generation_config"):
        fields = dataclasses.asdict(model.generation_config)
        fields["eos_token_id"] = list(fields["eos_token_id"])
        (directory / GENERATION_CONFIG_FILE).write_text(json.dumps(fields, indent=2) + "\n")
    state = {
        k: v.astype("float32").numpy() if v.dtype != "float32" else v.numpy() for k, v in model.state_dict().items()
    }
    write_safetensors(state, directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    if image_processor is not None:
        image_processor.save_pretrained(directory)
    return directory
