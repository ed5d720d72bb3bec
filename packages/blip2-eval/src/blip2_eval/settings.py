"""Every generation setting of an evaluation, pinned explicitly and written beside its results.

Library defaults move (LAVIS lost points when HF's changed, LAVIS #500 / #707, and LAVIS itself added a
repetition penalty of 1.15 to captioning in late 2023); a setting written down here cannot move silently.
The defaults are LAVIS's evaluation configs (``lavis/projects/blip2/eval/*.yaml``) as the paper ran them.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any

# LAVIS's zero-shot VQA configs prompt with "Short answer:"; blip2-data's VQA_PROMPT ("Question: {} Answer:",
# what blip2-core's predict_answers defaults to) is another text, so this one is not a copy of it. Both prompts
# are plain strings here because the CLI imports this module and the scorers must run without paddle (which
# importing blip2_data loads). LAVIS's caption eval prompt is blip2-data's CAPTION_PROMPT without its space.
LAVIS_VQA_EVAL_PROMPT = "Question: {} Short answer:"
LAVIS_CAPTION_PROMPT = "a photo of"


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding for one evaluation; ``length_penalty=None`` means "the LLM's LAVIS value" until resolved."""

    prompt: str
    num_beams: int
    max_new_tokens: int
    min_new_tokens: int
    length_penalty: float | None
    repetition_penalty: float = 1.0
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    num_return_sequences: int = 1
    eos_token_id: tuple[int, ...] | None = None  # None: resolved from the model and tokenizer

    def resolved(self, llm_type: str, eos_token_id: tuple[int, ...]) -> GenerationSettings:
        """Fill what LAVIS leaves to the libraries: the length penalty (T5's default -1, OPT's 0) and the eos ids."""
        values = {}
        if self.length_penalty is None:
            values["length_penalty"] = -1.0 if llm_type == "t5" else 0.0
        if self.eos_token_id is None:
            values["eos_token_id"] = tuple(eos_token_id)
        return dataclasses.replace(self, **values)

    def generate_kwargs(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values.pop("prompt")
        if values["length_penalty"] is None or values["eos_token_id"] is None:
            raise ValueError("length_penalty / eos_token_id unresolved: call resolved(llm_type, eos_token_id) first")
        return values


# dataset -> defaults; a dataset not listed uses its task's first entry.
CAPTION_DEFAULTS = {
    "coco_caption": GenerationSettings(LAVIS_CAPTION_PROMPT, 5, 30, 8, 1.0),
    "nocaps": GenerationSettings(LAVIS_CAPTION_PROMPT, 5, 80, 10, 1.0),
}
VQA_DEFAULTS = {"coco_vqa": GenerationSettings(LAVIS_VQA_EVAL_PROMPT, 5, 10, 1, None)}

OVERRIDES = ("prompt", "num_beams", "max_new_tokens", "min_new_tokens", "length_penalty", "repetition_penalty")


def default_settings(task: str, dataset: str) -> GenerationSettings:
    table = CAPTION_DEFAULTS if task == "caption" else VQA_DEFAULTS
    return table.get(dataset, next(iter(table.values())))


def add_generation_arguments(parser: argparse.ArgumentParser, task: str) -> None:
    caption = default_settings(task, "coco_caption" if task == "caption" else "coco_vqa")
    parser.add_argument("--prompt", help=f"default {caption.prompt!r}")
    parser.add_argument("--num_beams", type=int, help=f"default {caption.num_beams}")
    parser.add_argument("--max_new_tokens", type=int, help=f"default {caption.max_new_tokens} (NoCaps 80)")
    parser.add_argument("--min_new_tokens", type=int, help=f"default {caption.min_new_tokens} (NoCaps 10)")
    parser.add_argument(
        "--length_penalty", type=float, help="default 1.0 for captions; VQA: -1 for FlanT5, 0 for OPT (LAVIS)"
    )
    parser.add_argument("--repetition_penalty", type=float, help="default 1.0 (LAVIS since late 2023: 1.15)")


def settings_from_args(args: argparse.Namespace) -> GenerationSettings:
    settings = default_settings(args.command, args.dataset)
    given = {name: getattr(args, name) for name in OVERRIDES if getattr(args, name, None) is not None}
    return dataclasses.replace(settings, **given)
