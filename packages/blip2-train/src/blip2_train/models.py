"""Building the model each stage trains, and what the trainer switches on in it (frozen parts, recompute)."""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np
from paddle import nn

from blip2_core import Blip2Config, Blip2ForConditionalGeneration, Blip2Qformer
from blip2_qformer.formats.bert import init_from_bert

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
BERT_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
DEFAULT_STAGE2_MODEL = "paddlemix/blip2-stage2"
DEFAULT_LLM = "facebook/opt-2.7b"


def resolve_directory(name_or_path: str, patterns: list[str]) -> Path:
    """A local directory as is; a Hub name through blip2-core's cache (offline errors say what to fetch)."""
    local = Path(name_or_path).expanduser()
    if local.exists():
        return local
    from blip2_core.loading import hub

    return hub.resolve(name_or_path, allow_patterns=patterns)


def read_bert_checkpoint(name_or_path: str) -> dict[str, np.ndarray]:
    """bert-base-uncased's weights (safetensors preferred, else pytorch_model.bin) from a directory or the Hub."""
    directory = resolve_directory(name_or_path, ["*.json", "*.safetensors", "vocab.txt"])
    if directory.is_dir() and not (directory / BERT_WEIGHT_FILES[0]).exists():
        directory = resolve_directory(name_or_path, ["*.json", "*.bin", "vocab.txt"])
    for name in BERT_WEIGHT_FILES:
        path = directory / name if directory.is_dir() else directory
        if path.is_file():
            from blip2_core.checkpoint_io import read_state_dict

            return read_state_dict(path, trust_pickle=True)  # named by the user (or bert-base-uncased itself)
    raise FileNotFoundError(f"{directory}: no BERT weights ({' or '.join(BERT_WEIGHT_FILES)})")


# What stage-1 training changes: a starting model may lack these (they start fresh), never the ViT.
STAGE1_TRAINED_PARTS = ("qformer.", "vision_proj.", "text_proj.", "itm_head.", "lm_head.", "temp")


def same_llm(saved: str | None, given: str) -> bool:
    """Whether the LLM a config names and the one a user names are the same (a path in either spelling)."""
    if saved is None:
        return False
    return saved == given or Path(saved).expanduser().resolve() == Path(given).expanduser().resolve()


def check_loaded(model: Any, source: str, allow_fresh: tuple[str, ...] = ()) -> None:
    """A model to train may start some parts fresh (``allow_fresh`` prefixes: a stage-1 model has no projection);
    any other missing weight means the starting point was not what the user thinks: an error naming them."""
    report = model.load_report
    missing = [k for k in (report.missing if report is not None else []) if not k.startswith(allow_fresh)]
    fresh = sorted(
        {k.split(".")[0] for k in (report.missing if report is not None else []) if k.startswith(allow_fresh)}
    )
    if fresh:
        logger.info("%s: %s start fresh (not in the starting model)", source, ", ".join(fresh))
    if missing:
        raise ValueError(
            f"{source} lacks {len(missing)} weights the model needs ({', '.join(missing[:6])}"
            f"{' ...' if len(missing) > 6 else ''}): pass a complete model as --model_name_or_path"
        )


def fit_image_size(model: Any, image_size: int) -> None:
    if model.vision_model.config.image_size != image_size:
        model.vision_model.set_image_size(image_size)
    model.config.vision_config = dataclasses.replace(model.config.vision_config, image_size=image_size)


def _set_vit_frozen(model: Any, frozen: bool) -> None:
    model.config.freeze_vit = frozen
    for param in model.vision_model.parameters():
        param.stop_gradient = frozen


def build_stage1_model(
    model_name_or_path: str | None,
    vision_model_name_or_path: str,
    qformer_init: str,
    image_size: int,
    freeze_vit: bool,
    trust_pickle: bool = False,
) -> Blip2Qformer:
    """A stage-1 model to continue training, or a fresh one started as LAVIS does (vision weights + BERT)."""
    if model_name_or_path:
        # a model to continue from: what training changes may start fresh (logged), the frozen ViT may not
        model = Blip2Qformer.from_pretrained(model_name_or_path, trust_pickle=trust_pickle, allow_missing_weights=True)
        check_loaded(model, model_name_or_path, allow_fresh=STAGE1_TRAINED_PARTS)
    else:
        # the Q-Former and its heads start from BERT below: only the vision weights must be there
        model = Blip2Qformer.from_pretrained(
            vision_model_name_or_path, trust_pickle=trust_pickle, allow_missing_weights=True
        )
        missing = set(model.load_report.missing)
        vision_missing = sorted(k for k in missing if k.startswith("vision_model."))
        if vision_missing:
            raise ValueError(
                f"--vision_model_name_or_path {vision_model_name_or_path} lacks vision encoder weights "
                f"({', '.join(vision_missing[:4])} ...): pass EVA-ViT-g's weights (e.g. eva_vit_g) or a BLIP-2 model"
            )
        if any(k.startswith("qformer.layers.") and k not in missing for k in model.state_dict()):
            logger.warning(
                "%s holds Q-Former weights; starting from scratch re-initialises them from %s (pass it as "
                "--model_name_or_path to continue from it instead)",
                vision_model_name_or_path,
                qformer_init,
            )
        report = init_from_bert(model, read_bert_checkpoint(qformer_init))
        logger.info(
            "Q-Former from %s: %d tensors loaded, %d fresh", qformer_init, len(report.loaded), len(report.fresh)
        )
    fit_image_size(model, image_size)
    _set_vit_frozen(model, freeze_vit)
    return model


def build_stage2_model(
    model_name_or_path: str | None,
    text_model_name_or_path: str | None,
    image_size: int,
    freeze_vit: bool,
    trust_pickle: bool = False,
    qformer_text: bool = False,
) -> Blip2ForConditionalGeneration:
    """Stage 2 from a stage-1 model (or a stage-2 one to continue) and a frozen LLM.

    ``qformer_text``: keep (or add back) the Q-Former's text parts, for text beside the queries (VQA
    fine-tuning); from a stage-1 model they keep its weights, a stage-2 model has none (they start fresh)."""
    source = model_name_or_path or DEFAULT_STAGE2_MODEL
    config = None
    config_file = Path(source) / CONFIG_FILE
    if config_file.is_file():
        config = Blip2Config.from_file(config_file)
        if config.text_config is None or qformer_text:
            # a stage-1 directory: drop the Q-Former's text parts as LAVIS does, unless the text is wanted
            config.qformer_config = dataclasses.replace(config.qformer_config, has_text_input=qformer_text)
    if config is not None and config.text_config is not None:
        # a stage-2 model: it has its LLM, named in its config or embedded in its weights
        if text_model_name_or_path and config.text_name_or_path is None:
            raise ValueError(
                f"{source} carries its own LLM (its weights are in the model): leave out --text_model_name_or_path"
            )
        if text_model_name_or_path and not same_llm(config.text_name_or_path, text_model_name_or_path):
            raise ValueError(
                f"{source} was trained with the LLM {config.text_name_or_path}, not {text_model_name_or_path}"
            )
        llm = None  # what the config says
    else:  # a stage-1 model (or a known name): the LLM to connect, LAVIS's OPT-2.7b unless named
        llm = text_model_name_or_path or (config.text_name_or_path if config else None) or DEFAULT_LLM
    model = Blip2ForConditionalGeneration.from_pretrained(
        source,
        config=config,
        text_name_or_path=llm,
        trust_pickle=trust_pickle,
        # from a stage-1 model the projection starts fresh (a vision encoder alone: the Q-Former too); the ViT and
        # the LLM must be there
        allow_missing_weights=True,
    )
    check_loaded(model, source, allow_fresh=("language_projection.", "qformer."))
    missing = set(model.load_report.missing) if model.load_report is not None else set()
    if qformer_text and "qformer.embeddings.word_embeddings.weight" in missing:
        logger.warning(
            "%s has no Q-Former text weights (a stage-2 model drops them): they start fresh; start from the "
            "stage-1 model it came from to keep them",
            source,
        )
    if qformer_text:  # saved in config.json: blip2-core's predict_answers then gives the question to the Q-Former
        model.config.qformer_text_input = True
    fit_image_size(model, image_size)
    _set_vit_frozen(model, freeze_vit)
    return model


def _recompute_layer(layer: nn.Layer) -> None:
    """Recompute one Q-Former layer in backward; its cached keys/values stay outputs of the recomputed call."""
    from paddle.distributed.fleet.utils import recompute

    forward = layer.forward

    def flat(*args):
        hidden, (key, value) = forward(*args)
        return hidden, key, value

    @functools.wraps(forward)
    def checkpointed(*args):
        if not layer.training:
            return forward(*args)
        hidden, key, value = recompute(flat, *args, use_reentrant=False)
        return hidden, (key, value)

    layer.forward = checkpointed


def enable_gradient_checkpointing(model: Any) -> None:
    """ViT blocks (when trained) and Q-Former layers recompute their activations in backward."""
    model.vision_model.gradient_checkpointing = True
    for layer in model.qformer.layers:
        _recompute_layer(layer)


def trainable_names(model: nn.Layer) -> list[str]:
    return [name for name, param in model.named_parameters() if not param.stop_gradient]


def describe_parameters(model: nn.Layer) -> str:
    total = sum(int(np.prod(p.shape)) for p in model.parameters())
    trainable = sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient)
    return f"{trainable:,} trainable of {total:,} parameters"


# The stage-1 heads each loss trains; a head no chosen loss reaches would get no gradient.
_HEADS_OF_LOSS = {"itc": ("vision_proj", "text_proj", "temp"), "itm": ("itm_head",), "itg": ("lm_head",)}


def freeze_unused_heads(model: Any, losses: tuple[str, ...]) -> list[str]:
    """Freeze the stage-1 heads of the losses not trained (so data parallelism sees no unused parameter).

    Returns the frozen heads' names."""
    unknown = set(losses) - set(_HEADS_OF_LOSS)
    if unknown or not losses:
        raise ValueError(f"--stage1_losses must name some of {sorted(_HEADS_OF_LOSS)}, got {list(losses)}")
    frozen = []
    for loss, heads in _HEADS_OF_LOSS.items():
        if loss in losses:
            continue
        for name in heads:
            part = getattr(model, name)
            for param in part.parameters() if isinstance(part, nn.Layer) else [part]:
                param.stop_gradient = True
            frozen.append(name)
    return frozen
