"""Command-line arguments: PaddleNLP's ``TrainingArguments`` plus the model and data choices, with the names
PaddleMIX users know and LAVIS's recipe (``lavis/projects/blip2/train/pretrain_stage{1,2}.yaml``) as defaults."""

# PdArgumentParser evaluates these annotations at run time: Optional[...] keeps them valid on Python 3.9.
# ruff: noqa: UP045
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from paddlenlp.trainer import TrainingArguments

RECIPES = ("finetune-caption", "finetune-retrieval", "finetune-vqa", "finetune-instruct")
STAGES = ("stage1", "stage2", *RECIPES)
# The pre-training stage whose model (and losses) each command trains.
BASE_STAGE = {
    "stage1": "stage1",
    "stage2": "stage2",
    "finetune-caption": "stage2",
    "finetune-retrieval": "stage1",
    "finetune-vqa": "stage2",
    "finetune-instruct": "stage2",
}
# The commands whose samples put text (the question, or the instruction) into the Q-Former beside the queries
QUESTION_STAGES = ("finetune-vqa", "finetune-instruct")


@dataclass
class ModelArguments:
    model_name_or_path: Optional[str] = field(
        default=None,
        metadata={
            "help": "Weights to start from: a directory (a stage-1 output for stage 2), a known name or a Hub repo. "
            "Stage 1 without it starts as LAVIS does: --vision_model_name_or_path + --qformer_init. "
            "Stage 2 default: paddlemix/blip2-stage2."
        },
    )
    text_model_name_or_path: Optional[str] = field(
        default=None,
        metadata={"help": "Stage 2: the frozen LLM (weights and tokenizer), e.g. facebook/opt-2.7b (the default)."},
    )
    vision_model_name_or_path: str = field(
        default="eva_vit_g", metadata={"help": "Stage 1 from scratch: the vision encoder's weights."}
    )
    qformer_init: str = field(
        default="bert-base-uncased",
        metadata={"help": "Stage 1 from scratch: BERT checkpoint (Hub name or directory) the Q-Former starts from."},
    )
    qformer_tokenizer: Optional[str] = field(
        default=None,
        metadata={"help": "Stage 1: BERT tokenizer directory/name (default: the model's own, else --qformer_init)."},
    )
    load_model_path: Optional[str] = field(
        default=None,
        metadata={"help": "Start from these weights (a checkpoint-N or output directory), PaddleMIX's meaning."},
    )
    image_size: int = field(default=224, metadata={"help": "Input resolution (LAVIS pre-training: 224)."})
    freeze_vit: bool = field(default=True, metadata={"help": "Keep the vision encoder frozen (LAVIS: yes)."})
    trust_pickle: bool = field(default=False, metadata={"help": "Allow reading pickled checkpoints found on a hub."})
    stage1_losses: str = field(
        default="itc,itm,itg", metadata={"help": "Stage 1: the losses to train, comma-separated (LAVIS: all three)."}
    )
    qformer_question: bool = field(
        default=True,
        metadata={
            "help": "finetune-vqa: the question enters the Q-Former beside the queries as well as the LLM's prompt "
            "(BLIP-2's VQA fine-tuning, LAVIS); false: only the LLM reads it, as in zero-shot VQA."
        },
    )


@dataclass
class DataArguments:
    dataset: list[str] = field(
        default_factory=lambda: ["coco_caption"],
        metadata={
            "help": "Dataset names (coco_caption, vg_caption, custom_caption), several at once; or webdataset "
            "(tar shards, streamed: needs --max_steps). With --sampling_weights, a mixture of any of them."
        },
    )
    data_files: Optional[list[str]] = field(
        default=None,
        metadata={
            "help": "coco_karpathy-format data as IMAGE_ROOT,ANNOTATION_JSON pairs, several at once (all of the "
            "one --dataset, or one per --dataset). Without it the named datasets are downloaded. webdataset: shard "
            "paths, brace patterns ('shards/{00000..00099}.tar') or folders."
        },
    )
    sampling_weights: Optional[list[float]] = field(
        default=None,
        metadata={
            "help": "One weight per --dataset: each batch comes from one dataset, drawn with these weights (LAVIS's "
            "train_dataset_ratios); each dataset starts its next epoch when it runs out. Needed to mix webdataset "
            "with other datasets; --data_files then has one entry per --dataset ('-': the named dataset's download)."
        },
    )
    max_txt_len: int = field(default=32, metadata={"help": "Text tokens per caption (LAVIS: 32)."})
    prompt: str = field(default="", metadata={"help": "Stage 2 (OPT): prompt before each caption (LAVIS: none)."})
    skip_bad_samples: bool = field(
        default=False, metadata={"help": "Skip (and count) bad samples instead of stopping with an error."}
    )
    feature_cache: Optional[str] = field(
        default=None,
        metadata={
            "help": "Train from the frozen ViT's features that blip2-train cache-features wrote to this directory "
            "(no image decoding or ViT forward; needs --freeze_vit true). The features come from the eval transform "
            "(resize), so the random crop and flip of training images do not apply: this is what the speed costs."
        },
    )
    shuffle_buffer: int = field(default=1000, metadata={"help": "webdataset: items in each worker's shuffle buffer."})
    shuffle_shards: int = field(
        default=4, metadata={"help": "webdataset: shards each worker reads interleaved into its buffer at a time."}
    )
    webdataset_captions: str = field(
        default="random",
        metadata={"help": "webdataset: random (each image once per epoch, one of its captions) or all (every one)."},
    )
    log_consumed_samples: bool = field(
        default=False,
        metadata={
            "help": "webdataset, for testing and auditing: append each optimizer step's trained sample keys to "
            "consumed_samples_rank{r}.jsonl in --output_dir (one file per rank)."
        },
    )
    image_augmentation: bool = field(
        default=True,
        metadata={
            "help": "Random resized crop and flip of training images (LAVIS: yes); false: the eval transform "
            "(resize), what a feature cache holds."
        },
    )


@dataclass
class Blip2TrainingArguments(TrainingArguments):
    """LAVIS's stage-1 recipe as defaults; PaddleNLP's own options (``--fp16``, ``--sharding``, ...) all apply."""

    output_dir: str = field(default="output", metadata={"help": "Where checkpoints and the final model go."})
    do_train: bool = field(default=True, metadata={"help": "Train (always, for these commands)."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate (LAVIS: 1e-4)."})
    eta_min: float = field(default=1e-5, metadata={"help": "Learning rate at the end of the cosine (LAVIS: 1e-5)."})
    warmup_start_lr: float = field(default=1e-6, metadata={"help": "Learning rate at step 0 (LAVIS: 1e-6)."})
    warmup_steps: int = field(default=5000, metadata={"help": "Linear warmup steps (LAVIS stage 1: 5000)."})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW decay of weights with >= 2 dimensions."})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2: LAVIS's code 0.999, the paper 0.98."})
    max_grad_norm: float = field(default=0.0, metadata={"help": "Clip gradients to this global norm; 0: off (LAVIS)."})
    num_train_epochs: float = field(default=10.0, metadata={"help": "Epochs (LAVIS: 10); --max_steps overrides."})
    per_device_train_batch_size: int = field(default=100, metadata={"help": "Batch per process (LAVIS stage 1: 100)."})
    logging_steps: int = field(default=50, metadata={"help": "Log every N optimizer steps."})
    save_steps: int = field(default=1000, metadata={"help": "Save a checkpoint every N steps."})
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute ViT blocks and Q-Former layers in backward to save memory."}
    )
    lr_layer_decay: float = field(
        default=1.0,
        metadata={"help": "Learning-rate scale decay per ViT layer from the top (LAVIS retrieval: 0.95; 1: off)."},
    )
    dataloader_num_workers: int = field(default=2, metadata={"help": "Image-decoding worker processes."})
    # Every trainable parameter reaches the loss (the heads of losses that are off are frozen), so paddle's
    # DataParallel need not walk the graph each step looking for unused ones.
    ddp_find_unused_parameters: Optional[bool] = field(
        default=False, metadata={"help": "paddle.DataParallel's find_unused_parameters (off: all are used)."}
    )

    def __post_init__(self) -> None:
        if self.gradient_checkpointing:
            # PaddleNLP's trainer then all-reduces gradients itself after recomputation (its recompute path).
            self.recompute = True
        super().__post_init__()

    def to_sanitized_dict(self) -> dict[str, Any]:
        # VisualDL's add_hparams rejects booleans; it takes strings and numbers.
        return {k: (str(v) if isinstance(v, bool) else v) for k, v in super().to_sanitized_dict().items()}


@dataclass
class Stage2TrainingArguments(Blip2TrainingArguments):
    """LAVIS's stage-2 recipe: as stage 1, with 2000 warmup steps and 64 samples per process."""

    warmup_steps: int = field(default=2000, metadata={"help": "Linear warmup steps (LAVIS stage 2: 2000)."})
    per_device_train_batch_size: int = field(default=64, metadata={"help": "Batch per process (LAVIS stage 2: 64)."})


# -- fine-tuning recipes: LAVIS's caption_coco_ft.yaml / retrieval_coco_ft.yaml ---------------------------------


@dataclass
class FinetuneModelArguments(ModelArguments):
    """364 px (position embeddings interpolated from 224) and the ViT trained, in fp32, as LAVIS fine-tunes."""

    image_size: int = field(default=364, metadata={"help": "Input resolution (LAVIS fine-tuning: 364)."})
    freeze_vit: bool = field(default=False, metadata={"help": "Keep the vision encoder frozen (LAVIS: no)."})


@dataclass
class VqaModelArguments(FinetuneModelArguments):
    """LAVIS has no BLIP-2 VQA fine-tuning recipe; the paper's VQA setting: ViT and Q-Former trained."""

    image_size: int = field(default=224, metadata={"help": "Input resolution (LAVIS's VQA evaluation: 224)."})


@dataclass
class CaptionDataArguments(DataArguments):
    dataset: list[str] = field(
        default_factory=lambda: ["coco_caption"],
        metadata={"help": "Dataset names; custom_caption with --data_files for your own karpathy-format data."},
    )
    prompt: str = field(
        default="a photo of ",
        metadata={"help": "Prompt before each caption, masked from the loss (LAVIS: 'a photo of ')."},
    )


@dataclass
class VqaDataArguments(DataArguments):
    dataset: list[str] = field(
        default_factory=lambda: ["coco_vqa"],
        metadata={"help": "VQA datasets (coco_vqa: VQAv2 train); --data_files IMAGE_ROOT,vqa_train.json."},
    )
    prompt: str = field(
        default="Question: {} Short answer:",
        metadata={"help": "The LLM prompt; {} is the question (LAVIS's VQA prompt)."},
    )


@dataclass
class InstructModelArguments(VqaModelArguments):
    """InstructBLIP's instruction tuning: the ViT frozen (as the LLM), 224 px (LAVIS blip2_instruct_*.yaml)."""

    freeze_vit: bool = field(default=True, metadata={"help": "Keep the vision encoder frozen (InstructBLIP: yes)."})


@dataclass
class InstructDataArguments(VqaDataArguments):
    prompt: str = field(
        default="{}",
        metadata={"help": "The LLM prompt around the drawn instruction ({}); the Q-Former reads the instruction."},
    )


@dataclass
class FinetuneTrainingArguments(Blip2TrainingArguments):
    """LAVIS's caption_coco_ft.yaml: lr 1e-5 -> 0 after 1000 warmup steps from 1e-8, 5 epochs, 16 per GPU,
    gradient checkpointing (the ViT trains)."""

    learning_rate: float = field(default=1e-5, metadata={"help": "Peak learning rate (LAVIS fine-tuning: 1e-5)."})
    eta_min: float = field(default=0.0, metadata={"help": "Learning rate at the end of the cosine (LAVIS: 0)."})
    warmup_start_lr: float = field(default=1e-8, metadata={"help": "Learning rate at step 0 (LAVIS: 1e-8)."})
    warmup_steps: int = field(default=1000, metadata={"help": "Linear warmup steps (LAVIS fine-tuning: 1000)."})
    num_train_epochs: float = field(default=5.0, metadata={"help": "Epochs (LAVIS fine-tuning: 5)."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Batch per process (LAVIS: 16)."})
    gradient_checkpointing: bool = field(
        default=True, metadata={"help": "Recompute ViT blocks and Q-Former layers in backward (LAVIS: on)."}
    )


@dataclass
class RetrievalTrainingArguments(FinetuneTrainingArguments):
    """LAVIS's retrieval_coco_ft.yaml: as caption fine-tuning, 14 per GPU, layer-wise lr decay 0.95."""

    per_device_train_batch_size: int = field(default=14, metadata={"help": "Batch per process (LAVIS: 14)."})
    lr_layer_decay: float = field(
        default=0.95, metadata={"help": "Learning-rate scale decay per ViT layer from the top (LAVIS: 0.95)."}
    )


TRAINING_ARGUMENTS = {
    "stage1": Blip2TrainingArguments,
    "stage2": Stage2TrainingArguments,
    "finetune-caption": FinetuneTrainingArguments,
    "finetune-retrieval": RetrievalTrainingArguments,
    "finetune-vqa": FinetuneTrainingArguments,
    "finetune-instruct": FinetuneTrainingArguments,
}
MODEL_ARGUMENTS = {
    "finetune-caption": FinetuneModelArguments,
    "finetune-retrieval": FinetuneModelArguments,
    "finetune-vqa": VqaModelArguments,
    "finetune-instruct": InstructModelArguments,
}
DATA_ARGUMENTS = {
    "finetune-caption": CaptionDataArguments,
    "finetune-vqa": VqaDataArguments,
    "finetune-instruct": InstructDataArguments,
}
