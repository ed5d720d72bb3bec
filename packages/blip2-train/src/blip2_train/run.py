"""One training run: data, model and trainer from the parsed arguments, then the final model directory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import paddle
from paddlenlp.trainer import set_seed

from blip2_data import Blip2Collator, DatasetError, ImageProcessor, ImageProcessorConfig
from blip2_data.webdataset_source import WebDatasetSource

from .arguments import BASE_STAGE, QUESTION_STAGES, Blip2TrainingArguments, DataArguments, ModelArguments
from .cache_features import dataset_samples
from .checkpoint import (
    ModelFiles,
    checkpoint_step,
    finished_step,
    last_complete_checkpoint,
    load_weights,
    mark_finished,
    save_final_model,
)
from .data import TrainingCollator, TrainingSamples, load_training_data
from .feature_cache import CacheKey, FeatureCache
from .instruct import InstructTrainingSamples, as_instructblip
from .mixture import MixedSamples, plan_mixture
from .models import (
    DEFAULT_STAGE2_MODEL,
    build_stage1_model,
    build_stage2_model,
    describe_parameters,
    enable_gradient_checkpointing,
    freeze_unused_heads,
    resolve_directory,
)
from .precision import apply_part_dtypes, part_dtypes
from .stream import StreamingSamples, is_stream, load_stream, require_max_steps
from .trainer import Blip2Trainer, planned_steps
from .vqa import VqaCollator, VqaTrainingSamples

logger = logging.getLogger("blip2_train")
TOKENIZER_FILES = ["*.json", "vocab.txt", "vocab.json", "merges.txt", "spiece.model"]


def resolve_resume(value: str | None, output_dir: str) -> str | None:
    """``latest`` (or ``true``) -> the newest complete checkpoint in ``output_dir`` (None: start fresh)."""
    if not value:
        return None
    if value.lower() in ("latest", "true"):
        found = last_complete_checkpoint(output_dir)
        if found is None:
            logger.info("--resume_from_checkpoint %s: no complete checkpoint in %s, starting fresh", value, output_dir)
        return str(found) if found else None
    if not Path(value).is_dir():
        raise FileNotFoundError(f"--resume_from_checkpoint {value}: not a directory")
    return value


def already_finished(value: str | None, resume: str | None, output_dir: str, planned: int) -> int | None:
    """The step of the complete final model in ``output_dir`` when resuming has nothing to add to it, else None.

    ``latest``: the run's final model is at ``planned`` steps or more (whatever its newest checkpoint); a given
    checkpoint: it is at ``planned`` steps or more and the final model was written from it."""
    done = finished_step(output_dir)
    if not value or done is None:
        return None
    if value.lower() in ("latest", "true"):
        return done if done >= planned else None
    return done if resume is not None and checkpoint_step(resume) == done >= planned else None


def check_stream_options(stage: str, data_args: DataArguments, what: str = "--dataset webdataset") -> None:
    """What training from webdataset shards, or from a mixture, does not do (refused before anything loads)."""
    if stage in QUESTION_STAGES:
        raise DatasetError(f"blip2-train {stage}: {what} is for caption pre-training (stage1, stage2), not questions")
    if data_args.feature_cache:
        raise DatasetError(f"--feature_cache is for map-style datasets read on their own, not with {what}")


def load_text_tokenizer(stage: str, model_args: ModelArguments, model: Any = None) -> Any:
    """Stage 2: the LLM's tokenizer (the LLM the model names, else the model directory's own files, for an
    embedded LLM); stage 1: the Q-Former's BERT tokenizer."""
    from blip2_core.loading.text_tokenizer import load_tokenizer

    if stage == "stage2":
        named = model_args.text_model_name_or_path or (model.config.text_name_or_path if model is not None else None)
        return load_tokenizer(named or model_args.model_name_or_path or DEFAULT_STAGE2_MODEL)
    for candidate in (model_args.qformer_tokenizer, model_args.model_name_or_path):
        if candidate and (Path(candidate) / "vocab.txt").is_file():
            return load_tokenizer(candidate)
    name = model_args.qformer_tokenizer or model_args.qformer_init
    return load_tokenizer(resolve_directory(name, TOKENIZER_FILES))


def build_collator(stage: str, tokenizer: Any, model: Any, data_args: DataArguments) -> Blip2Collator:
    length = data_args.max_txt_len
    if BASE_STAGE[stage] == "stage1":
        return Blip2Collator.for_qformer(tokenizer, max_length=length)
    target = "text_output" if stage in QUESTION_STAGES else "text_input"  # VQA: the answer
    if model.language_model.is_decoder_only:
        return Blip2Collator.for_causal_lm(tokenizer, data_args.prompt, target_key=target, max_length=length)
    if stage == "stage2":  # the paper's prefix LM: each caption split at a random word
        return Blip2Collator.for_seq2seq(tokenizer, prompt="", target_key="text_output", max_length=length)
    # FlanT5: the prompt (caption fine-tuning: "a photo of "; VQA: the question) into the encoder, the target out
    return Blip2Collator.for_seq2seq(tokenizer, prompt=data_args.prompt, target_key=target, max_length=length)


def build_training_collator(
    stage: str, tokenizer: Any, model: Any, data_args: DataArguments, model_args: ModelArguments
) -> TrainingCollator:
    collator = build_collator(stage, tokenizer, model, data_args)
    if stage not in QUESTION_STAGES:
        return TrainingCollator(collator, BASE_STAGE[stage])
    if not question_in_qformer(stage, model_args):
        return VqaCollator(collator, None)
    # the question also enters the Q-Former, in its own (BERT) tokens
    qformer_tokenizer = load_text_tokenizer("stage1", model_args)
    return VqaCollator(collator, Blip2Collator.for_qformer(qformer_tokenizer, data_args.max_txt_len))


def question_in_qformer(stage: str, model_args: ModelArguments) -> bool:
    """Whether the question (instruction) is also the Q-Former's text input: always for InstructBLIP, for VQA
    unless ``--qformer_question false``."""
    return stage == "finetune-instruct" or (stage in QUESTION_STAGES and model_args.qformer_question)


def resolve_model_names(model_args: ModelArguments) -> None:
    """Names that stand for a folder of this installation (``blip2-shapes``) become that folder, so that its
    config, tokenizers and preprocessing are read like any model directory's."""
    from blip2_core.loading.default_model import embedded_model_path

    for name in ("model_name_or_path", "load_model_path"):
        value = getattr(model_args, name)
        embedded = embedded_model_path(value) if value else None
        if embedded is not None:
            setattr(model_args, name, str(embedded))


def starting_models(stage: str, model_args: ModelArguments) -> list[str]:
    """The models whose weights this run starts from, in the order they are loaded: what a checkpoint's frozen
    parts are read from again."""
    if BASE_STAGE[stage] == "stage1":
        first = model_args.model_name_or_path or model_args.vision_model_name_or_path
    else:
        first = model_args.model_name_or_path or DEFAULT_STAGE2_MODEL
    return [first, *([model_args.load_model_path] if model_args.load_model_path else [])]


def build_model(stage: str, model_args: ModelArguments) -> Any:
    if BASE_STAGE[stage] == "stage1":
        if stage == "finetune-retrieval" and not model_args.model_name_or_path:
            raise ValueError("finetune-retrieval starts from a stage-1 model: pass --model_name_or_path")
        return build_stage1_model(
            model_args.model_name_or_path,
            model_args.vision_model_name_or_path,
            model_args.qformer_init,
            model_args.image_size,
            model_args.freeze_vit,
            model_args.trust_pickle,
        )
    model = build_stage2_model(
        model_args.model_name_or_path,
        model_args.text_model_name_or_path,
        model_args.image_size,
        model_args.freeze_vit,
        model_args.trust_pickle,
        qformer_text=question_in_qformer(stage, model_args),
    )
    return as_instructblip(model) if stage == "finetune-instruct" else model


def run(stage: str, model_args: ModelArguments, data_args: DataArguments, args: Blip2TrainingArguments) -> Any:
    """Train ``stage`` and write the final model to ``args.output_dir``; returns PaddleNLP's TrainOutput (None:
    the run had already finished, and nothing was done)."""
    device = "GPU" if paddle.device.is_compiled_with_cuda() else "CPU"
    precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
    logger.info("blip2-train %s: %s, %s, %d process(es)", stage, device, precision, max(args.world_size, 1))
    resume = resolve_resume(args.resume_from_checkpoint, args.output_dir)

    # data first: a missing annotation file should not wait for a 1B-parameter model to load
    mixture = None
    streamed = True  # read by a StreamLoader or a MixedLoader (no length: --max_steps ends the run)
    if data_args.sampling_weights:
        mixture = plan_mixture(data_args.dataset, data_args.data_files, data_args.sampling_weights)
        check_stream_options(stage, data_args, "--sampling_weights")
        require_max_steps(args, "datasets mixed by --sampling_weights are read without end")
        dataset = [
            (part, load_stream(part.data_files, data_args, args) if part.is_stream else load_training_data(
                [part.dataset], part.data_files, data_args.skip_bad_samples
            ))
            for part in mixture
        ]  # fmt: skip
        total = sum(part.weight for part in mixture)
        logger.info(
            "each batch from one of: %s",
            ", ".join(f"{part.label} {part.weight / total:.0%} ({data!r})" for part, data in dataset),
        )
        planned = args.max_steps
    elif is_stream(data_args.dataset):
        check_stream_options(stage, data_args)
        dataset = load_stream(data_args.data_files, data_args, args)
        planned = args.max_steps
    else:
        streamed = False
        dataset = load_training_data(data_args.dataset, data_args.data_files, data_args.skip_bad_samples)
        planned = planned_steps(len(dataset), args)
    done = already_finished(args.resume_from_checkpoint, resume, args.output_dir, planned)
    if done is not None:  # a rerun of a finished run: nothing is loaded, trained or written
        logger.info(
            "%s: this run already finished (final model from step %d, --max_steps %d): nothing to do",
            args.output_dir,
            done,
            planned,
        )
        return None
    image_config = ImageProcessorConfig(image_size=model_args.image_size)
    features = None
    if data_args.feature_cache:
        features = FeatureCache(data_args.feature_cache)
        features.check_image_pipeline(image_config)  # before the model loads; its encoder is checked after
        features.check_images([sample["image"] for sample in dataset_samples(dataset)])
    set_seed(args.seed)  # the same initial weights on every rank
    resolve_model_names(model_args)
    model = build_model(stage, model_args)
    if model_args.load_model_path:
        names = load_weights(model, model_args.load_model_path, require_all_trainable=False)
        logger.info("loaded %d weights from --load_model_path %s", len(names), model_args.load_model_path)
    half = "float16" if args.fp16 else "bfloat16" if args.bf16 else None
    apply_part_dtypes(model, part_dtypes(model, half if paddle.device.is_compiled_with_cuda() else None))
    if args.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    logger.info("%s: %s", type(model).__name__, describe_parameters(model))
    if features is not None:
        features.check(CacheKey.of(model, image_config))  # the ViT as trained here (after --load_model_path)
        logger.info("training from the features of %d images in %s", len(features), data_args.feature_cache)

    tokenizer = load_text_tokenizer(BASE_STAGE[stage], model_args, model)
    prefix_lm = stage == "stage2" and not model.language_model.is_decoder_only

    def prepared(data: Any) -> Any:
        """The items the model trains on: shards' as they stream, a map-style dataset's by index."""
        if isinstance(data, WebDatasetSource):
            return StreamingSamples(
                data,
                image_config,
                batch_size=args.per_device_train_batch_size,
                seed=args.seed,
                split_for_prefix_lm=prefix_lm,
                augment=data_args.image_augmentation,
            )
        samples_class = {"finetune-vqa": VqaTrainingSamples, "finetune-instruct": InstructTrainingSamples}
        return samples_class.get(stage, TrainingSamples)(
            data,
            image_config,
            seed=args.seed,
            skip_bad_samples=data_args.skip_bad_samples,
            split_for_prefix_lm=prefix_lm,
            defer_errors=True,
            augment=data_args.image_augmentation,
            features=features,
        )

    if mixture is not None:
        samples = MixedSamples([(part, prepared(data)) for part, data in dataset], seed=args.seed)
    else:
        samples = prepared(dataset)
    model_kwargs = {}
    if BASE_STAGE[stage] == "stage1":
        model_kwargs["losses"] = tuple(name.strip() for name in model_args.stage1_losses.split(",") if name.strip())
        frozen = freeze_unused_heads(model, model_kwargs["losses"])
        if frozen:
            logger.info("not trained (their losses are off): %s", ", ".join(frozen))
    collator = build_training_collator(stage, tokenizer, model, data_args, model_args)
    collator.carry_keys = streamed and data_args.log_consumed_samples
    files = ModelFiles(
        tokenizer=tokenizer,
        image_processor=ImageProcessor(image_config),
        # the question's Q-Former (BERT) tokens: kept beside the LLM's tokenizer
        qformer_tokenizer=collator.qformer_collator.tokenizer if question_in_qformer(stage, model_args) else None,
        weights_from=starting_models(stage, model_args),
    )
    trainer = Blip2Trainer(
        model=model,
        args=args,
        train_dataset=samples,
        data_collator=collator,
        model_kwargs=model_kwargs,
        model_files=files,
        log_consumed_samples=streamed and data_args.log_consumed_samples,
    )
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.check_finite_weights("the final model")
    if args.should_save:
        save_final_model(model, args.output_dir, files)
        mark_finished(args.output_dir, trainer.state.global_step)  # after the model: its files are complete
        logger.info("final model written to %s (loads with %s.from_pretrained)", args.output_dir, type(model).__name__)
    if trainer.bad_samples:
        logger.warning("skipped %d bad samples in this run", trainer.bad_samples)
    if paddle.distributed.get_world_size() > 1:
        # Every rank leaves together: a rank that exits while rank 0 still writes the final model closes its gloo
        # connections under rank 0, which then aborts (seen in the two-process test, twice in eight runs).
        paddle.distributed.barrier()
    return result
