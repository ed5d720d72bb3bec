"""PaddleMIX's command-line names on our argparse tools (blip2-predict, blip2-merge, blip2-eval).

PaddleMIX's BLIP-2 scripts (``paddlemix/examples/blip2/run_eval_caption.py``, ``run_eval_vqav2_zeroshot.py``,
``run_predict.py``) parse paddlenlp's whole ``TrainingArguments`` plus their own ``PreTrainingArguments``, so their
users' command lines carry training settings that do nothing when evaluating or predicting there either (no
Trainer runs in ``run_predict.py``; the eval scripts only build one to call ``evaluate``). Those are accepted here
and named as ignored, so that a PaddleMIX command line runs; every flag with a meaning here is an alias of ours.
"""

from __future__ import annotations

import argparse
import sys

# PaddleMIX's PreTrainingArguments fields that configure training (paddlemix/examples/blip2/*.py), with the
# inherited paddlenlp ones its README's commands pass. Booleans are written "--fp16 False" there.
INERT_TRAINING_FLAGS = (
    "weight_decay",
    "learning_rate",
    "num_train_epochs",
    "warmup_start_lr",
    "eta_min",
    "warmup_steps",
    "lr_scheduler_name",
    "per_device_train_batch_size",
    "do_train",
    "do_eval",
    "logging_steps",
    "evaluation_strategy",
    "save_strategy",
    "fp16",
    "fp16_opt_level",
    "gradient_checkpointing",
    "tensor_parallel_degree",
    "sharding_parallel_degree",
    "pipeline_parallel_degree",
    "benchmark",
    "profiler_options",
    "seed",
)
_GROUP = "PaddleMIX training settings (accepted so that PaddleMIX command lines run; they do nothing here)"


def add_inert_training_flags(parser: argparse.ArgumentParser) -> None:
    """Accept PaddleMIX's training flags (each with an optional value) and remember which were given."""
    group = parser.add_argument_group(_GROUP)
    for name in INERT_TRAINING_FLAGS:
        group.add_argument(f"--{name}", dest=f"paddlemix_{name}", nargs="?", const="true", help=argparse.SUPPRESS)


def warn_ignored_flags(args: argparse.Namespace, tool: str) -> list[str]:
    """One line on standard error naming the PaddleMIX training flags given, which do nothing here."""
    given = [f"--{name}" for name in INERT_TRAINING_FLAGS if getattr(args, f"paddlemix_{name}", None) is not None]
    if given:
        print(f"{tool}: ignored, as they are training settings: {' '.join(given)}", file=sys.stderr)
    return given
