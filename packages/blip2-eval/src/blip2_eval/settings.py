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

from blip2_core.model.generation_settings import GenerationSettings as DecodingSettings
from blip2_core.model.generation_settings import task_defaults

# LAVIS's zero-shot VQA configs prompt with "Short answer:"; blip2-data's VQA_PROMPT ("Question: {} Answer:",
# what blip2-core's predict_answers defaults to) is another text, so this one is not a copy of it. Both prompts
# are plain strings here because the CLI imports this module and the scorers must run without paddle (which
# importing blip2_data loads). LAVIS's caption eval prompt is blip2-data's CAPTION_PROMPT without its space.
LAVIS_VQA_EVAL_PROMPT = "Question: {} Short answer:"
LAVIS_CAPTION_PROMPT = "a photo of"


@dataclass(frozen=True)
class GenerationSettings(DecodingSettings):
    """An evaluation's decoding: blip2-core's settings (``None`` fields: the task's LAVIS default for the model's
    LLM, the same ones blip2-predict and blip2-serve use) and the prompt."""

    prompt: str = ""

    def for_model(
        self, task: str, llm_type: str, eos_token_id: tuple[int, ...], model_type: str = "blip-2"
    ) -> GenerationSettings:
        """Every field pinned: the task's defaults for ``llm_type`` (and the model type, e.g. InstructBLIP's own),
        and ``eos_token_id`` where none was set."""
        settings = self.resolved(task, llm_type, model_type)
        if settings.eos_token_id is None:
            settings = dataclasses.replace(settings, eos_token_id=tuple(eos_token_id))
        return settings

    def generate_kwargs(self) -> dict[str, Any]:
        values = super().generate_kwargs()
        values.pop("prompt")
        return values


# dataset -> what it changes from the task's defaults; a dataset not listed uses its task's first entry.
CAPTION_DEFAULTS = {
    "coco_caption": GenerationSettings(prompt=LAVIS_CAPTION_PROMPT),
    # LAVIS's caption_nocaps_out_domain_flant5xl_eval.yaml: longer captions, no prompt (its "prompt" line is
    # commented out and blip2_t5's pretrain_flant5xl has none)
    "nocaps": GenerationSettings(prompt="", max_new_tokens=80, min_new_tokens=10),
}
VQA_DEFAULTS = {"coco_vqa": GenerationSettings(prompt=LAVIS_VQA_EVAL_PROMPT)}

# Named decoding presets: what each reference evaluates with, before any flag given on the command line.
DECODING_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # LAVIS's eval yamls as the paper ran them (the defaults above)
    "lavis": {"caption": {}, "vqa": {}},
    # LAVIS's CaptionTask since its 2023 rework (lavis/tasks/captioning.py at ac8fc98c: repetition_penalty 1.15
    # and length_penalty 0 unless the yaml sets them, which the BLIP-2 caption yamls do not)
    "lavis-current": {"caption": {"repetition_penalty": 1.15, "length_penalty": 0.0}, "vqa": {}},
    # PaddleMIX's own evaluation: paddlemix/models/blip2/modeling.py generate / predict_answers pass
    # decode_strategy="greedy_search", so paddlenlp decodes greedily whatever num_beams says (30 / 8 tokens for
    # captions, 10 / 1 for answers, as LAVIS's)
    "paddlemix": {"caption": {"num_beams": 1}, "vqa": {"num_beams": 1}},
}

OVERRIDES = ("prompt", "num_beams", "max_new_tokens", "min_new_tokens", "length_penalty", "repetition_penalty")


def default_settings(task: str, dataset: str) -> GenerationSettings:
    table = CAPTION_DEFAULTS if task == "caption" else VQA_DEFAULTS
    return table.get(dataset, next(iter(table.values())))


def add_generation_arguments(parser: argparse.ArgumentParser, task: str) -> None:
    settings = default_settings(task, "coco_caption" if task == "caption" else "coco_vqa")
    defaults = task_defaults("caption" if task == "caption" else "vqa", "opt")
    nocaps = " (NoCaps {})" if task == "caption" else "{}"
    parser.add_argument("--prompt", help=f"default {settings.prompt!r}")
    parser.add_argument("--num_beams", type=int, help=f"default {settings.num_beams}")
    parser.add_argument("--max_new_tokens", type=int, help=f"default {defaults.max_new_tokens}" + nocaps.format(80))
    parser.add_argument("--min_new_tokens", type=int, help=f"default {defaults.min_new_tokens}" + nocaps.format(10))
    parser.add_argument(
        "--length_penalty",
        type=float,
        help="default 1.0 for captions; VQA: -1 for FlanT5, 0 for OPT (LAVIS's predict_answers)",
    )
    parser.add_argument("--repetition_penalty", type=float, help="default 1.0 (LAVIS since late 2023: 1.15)")
    parser.add_argument(
        "--decoding",
        choices=sorted(DECODING_PRESETS),
        default="lavis",
        help="decoding preset before the flags above: lavis (its eval yamls, as the paper ran them; default), "
        "lavis-current (captions with its CaptionTask's repetition penalty 1.15 and length penalty 0), paddlemix "
        "(greedy, as PaddleMIX's own evaluation decodes)",
    )


def with_model_prompt(settings: GenerationSettings, task: str, model: Any, given: str | None) -> GenerationSettings:
    """A model whose prompt is an instruction (InstructBLIP) is evaluated with its own prompts, as LAVIS evaluates it
    (``lavis/projects/instructblip/*_eval.yaml``: the model's ``vqa_prompt`` / ``caption_prompt``), unless
    ``--prompt`` was given."""
    if given is not None or not getattr(model, "prompt_is_instruction", False):
        return settings
    prompt = getattr(model, "vqa_prompt" if task == "vqa" else "caption_prompt", settings.prompt)
    return dataclasses.replace(settings, prompt=prompt)


def settings_from_args(args: argparse.Namespace) -> GenerationSettings:
    settings = default_settings(args.command, args.dataset)
    preset = DECODING_PRESETS[getattr(args, "decoding", "lavis")][args.command]
    given = {name: getattr(args, name) for name in OVERRIDES if getattr(args, name, None) is not None}
    return dataclasses.replace(settings, **{**preset, **given})
