"""PaddleMIX's argument names on blip2-train: its users' command lines run as written.

Each name of ``paddlemix/examples/blip2/run_pretrain_stage{1,2}.py`` that ours spell differently is accepted with
the meaning PaddleMIX gives it; where PaddleMIX's name has no meaning here, a value that would do something is
refused with one line naming our equivalent, and one that does nothing there is accepted and named as ignored.
"""

# PdArgumentParser evaluates these annotations at run time: Optional[...] keeps them valid on Python 3.9.
# ruff: noqa: UP045
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

logger = logging.getLogger(__name__)

# The only scheduler paddlemix.optimization defines (its lr_scheduler_name's one valid value); ours is the same
# shape: linear warmup from --warmup_start_lr, then a cosine to --eta_min.
PADDLEMIX_SCHEDULER = "CosineDecayWithWarmup"


class PaddleMixNameError(SystemExit):
    """A PaddleMIX argument whose value has no meaning here; the message names what to use instead."""


@dataclass
class PaddleMixArguments:
    """PaddleMIX's names (``paddlemix/examples/blip2/run_pretrain_stage{1,2}.py``)."""

    task_name: Optional[list[str]] = field(
        default=None, metadata={"help": "PaddleMIX's name for --dataset (one or several dataset names)."}
    )
    qformer_tokenizer_name: Optional[str] = field(
        default=None, metadata={"help": "PaddleMIX's name for --qformer_tokenizer."}
    )
    model_path: Optional[str] = field(
        default=None, metadata={"help": "PaddleMIX's older name for --load_model_path (before its 2023-09 rename)."}
    )
    pretrained_model_path: Optional[str] = field(
        default=None, metadata={"help": "PaddleMIX's first name for --load_model_path (2023-08)."}
    )
    lr_scheduler_name: Optional[str] = field(
        default=None, metadata={"help": f"PaddleMIX's scheduler choice; only {PADDLEMIX_SCHEDULER} (ours) exists."}
    )
    llm_name: Optional[str] = field(
        default=None,
        metadata={"help": "Ignored, as PaddleMIX ignores it since 2023-08; the LLM is --text_model_name_or_path."},
    )
    checkpoint_steps: Optional[int] = field(
        default=None, metadata={"help": "Ignored, as PaddleMIX never read it; checkpoints: --save_steps."}
    )
    benchmark: bool = field(
        default=False, metadata={"help": "PaddleMIX's throughput log; refused: our log lines carry samples per second."}
    )
    profiler_options: Optional[str] = field(
        default=None, metadata={"help": "PaddleMIX's paddle.profiler hook; refused (no profiler hook here)."}
    )


def apply_paddlemix_names(names: PaddleMixArguments, model_args: Any, data_args: Any, prog: str) -> list[str]:
    """Move PaddleMIX's names onto ours (or refuse them); returns the ones ignored, as logged."""
    if names.task_name:
        if data_args.dataset != type(data_args)().dataset and list(data_args.dataset) != list(names.task_name):
            raise PaddleMixNameError(f"{prog}: --task_name and --dataset name different datasets: give one of them")
        data_args.dataset = list(names.task_name)
    if names.qformer_tokenizer_name:
        model_args.qformer_tokenizer = names.qformer_tokenizer_name
    for old in (names.model_path, names.pretrained_model_path):
        if old:
            if model_args.load_model_path and model_args.load_model_path != old:
                raise PaddleMixNameError(f"{prog}: --model_path and --load_model_path differ: give --load_model_path")
            model_args.load_model_path = old
    if names.lr_scheduler_name and names.lr_scheduler_name != PADDLEMIX_SCHEDULER:
        raise PaddleMixNameError(
            f"{prog}: --lr_scheduler_name {names.lr_scheduler_name}: the schedule here is {PADDLEMIX_SCHEDULER} "
            "(linear warmup, then cosine), set by --warmup_steps, --warmup_start_lr, --learning_rate and --eta_min"
        )
    if names.benchmark:
        raise PaddleMixNameError(
            f"{prog}: --benchmark: every log line here already has PaddleNLP's interval_samples_per_second; for a "
            "step timed against HF transformers run nox -s bench"
        )
    if names.profiler_options:
        raise PaddleMixNameError(
            f"{prog}: --profiler_options: there is no profiler hook here; profile a short run with py-spy or "
            "paddle.profiler in your own script"
        )
    ignored = [f"--{name}" for name in ("llm_name", "checkpoint_steps") if getattr(names, name) is not None]
    if ignored:
        logger.warning("%s: ignored, as PaddleMIX ignores them: %s", prog, " ".join(ignored))
    return ignored
