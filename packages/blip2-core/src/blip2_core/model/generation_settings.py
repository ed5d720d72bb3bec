"""How each task decodes, per LLM: one settings type that blip2-predict, blip2-serve and blip2-eval all resolve.

A field left ``None`` takes the task's default for the model's LLM family (``TASK_DEFAULTS``), so the same model
and task decode the same way in every tool. The defaults are LAVIS's, each with its source:

- captions, OPT and FlanT5: beam 5, 8 to 30 new tokens, length penalty 1 (``lavis/projects/blip2/eval/
  caption_coco_*_eval.yaml``: ``num_beams 5``, ``max_len 30``, ``min_len 8``; ``Blip2OPT.generate`` /
  ``Blip2T5.generate`` pass ``length_penalty=1.0``);
- answers, OPT: beam 5, 1 to 10 new tokens, length penalty 0 (``Blip2OPT.predict_answers(...,
  length_penalty=0)``, which ``vqav2_zeroshot_opt_eval.yaml`` does not override);
- answers, FlanT5: the same with length penalty -1 (``Blip2T5.predict_answers(..., length_penalty=-1)``).

A model built on the same parts (``blip2_core.loading.model_types``) may bring its own table (InstructBLIP's are LAVIS's
``lavis/projects/instructblip`` yamls); ``resolved`` and ``task_defaults`` take the model type.

Paddle-free: the command-line parsers and the scorers import it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

TASKS = ("caption", "vqa")
LLM_TYPES = ("opt", "t5", "llama")
# The widest length penalty we accept: beyond it beam search only ever keeps the shortest or longest beam.
LENGTH_PENALTY_RANGE = (-5.0, 5.0)


@dataclass(frozen=True)
class TaskDefaults:
    """The values a task's ``None`` fields resolve to, and where they come from."""

    max_new_tokens: int
    min_new_tokens: int
    length_penalty: float
    source: str
    repetition_penalty: float = 1.0


TASK_DEFAULTS: dict[tuple[str, str], TaskDefaults] = {
    ("caption", "opt"): TaskDefaults(30, 8, 1.0, "LAVIS caption_coco_opt eval yaml; Blip2OPT.generate"),
    ("caption", "t5"): TaskDefaults(30, 8, 1.0, "LAVIS caption_coco_flant5 eval yaml; Blip2T5.generate"),
    ("vqa", "opt"): TaskDefaults(10, 1, 0.0, "LAVIS vqav2_zeroshot_opt eval yaml; Blip2OPT.predict_answers"),
    ("vqa", "t5"): TaskDefaults(10, 1, -1.0, "LAVIS vqav2_zeroshot_flant5 eval yaml; Blip2T5.predict_answers"),
    # no BLIP-2 with LLaMA was published: a decoder-only LLM decodes as OPT does
    ("caption", "llama"): TaskDefaults(30, 8, 1.0, "as OPT's (no published BLIP-2 LLaMA model)"),
    ("vqa", "llama"): TaskDefaults(10, 1, 0.0, "as OPT's (no published BLIP-2 LLaMA model)"),
}


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings for one task; ``None`` fields take ``TASK_DEFAULTS[(task, llm_type)]``.

    ``eos_token_id`` None keeps the model's own (its generation_config.json)."""

    num_beams: int = 5
    max_new_tokens: int | None = None
    min_new_tokens: int | None = None
    length_penalty: float | None = None
    repetition_penalty: float | None = None
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    num_return_sequences: int = 1
    eos_token_id: tuple[int, ...] | None = None

    def resolved(self, task: str, llm_type: str, model_type: str = "blip-2") -> GenerationSettings:
        """Every ``None`` field filled from the task's defaults for this LLM family and model type (a default
        minimum never above the maximum asked for)."""
        defaults = task_defaults(task, llm_type, model_type)
        values = {name: getattr(defaults, name) for name in _RESOLVED if getattr(self, name) is None}
        if "min_new_tokens" in values:
            values["min_new_tokens"] = min(values["min_new_tokens"], self.max_new_tokens or defaults.max_new_tokens)
        return dataclasses.replace(self, **values) if values else self

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``generate`` / ``predict_answers`` (resolve first)."""
        unresolved = [n for n in _RESOLVED if getattr(self, n) is None]
        if unresolved:
            raise ValueError(f"{', '.join(unresolved)} unresolved: call resolved(task, llm_type) first")
        values = dataclasses.asdict(self)
        if values["eos_token_id"] is None:
            del values["eos_token_id"]
        else:
            values["eos_token_id"] = tuple(values["eos_token_id"])
        if not self.do_sample:  # the sampling warpers do nothing without sampling
            for name in ("temperature", "top_k", "top_p"):
                del values[name]
        return values

    def check(self, *, max_positions: int | None = None, prompt_tokens: int = 0) -> None:
        """Refuse what would crash or mislead decoding, naming the limit (``ValueError``).

        ``max_positions``: the LLM's position table (OPT's ``max_position_embeddings``; None: unbounded, T5);
        ``prompt_tokens``: the longest prompt's tokens including the visual tokens before it."""
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {self.num_beams}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.min_new_tokens is not None and self.min_new_tokens < 0:
            raise ValueError(f"min_new_tokens must be >= 0, got {self.min_new_tokens}")
        if (
            self.max_new_tokens is not None
            and self.min_new_tokens is not None
            and self.min_new_tokens > self.max_new_tokens
        ):
            raise ValueError(
                f"min_new_tokens ({self.min_new_tokens}) must be <= max_new_tokens ({self.max_new_tokens})"
            )
        low, high = LENGTH_PENALTY_RANGE
        if self.length_penalty is not None and not low <= self.length_penalty <= high:
            raise ValueError(f"length_penalty must be in [{low}, {high}], got {self.length_penalty}")
        if max_positions is not None and self.max_new_tokens is not None:
            if prompt_tokens + self.max_new_tokens > max_positions:
                raise ValueError(
                    f"the prompt ({prompt_tokens} tokens with the image's) + max_new_tokens ({self.max_new_tokens}) "
                    f"exceed the LLM's {max_positions} positions: shorten the prompt or lower max_new_tokens"
                )


def task_defaults(task: str, llm_type: str, model_type: str = "blip-2") -> TaskDefaults:
    """The defaults of ``task`` for a model of ``model_type`` with an ``llm_type`` LLM: the model type's own table
    (``blip2_core.loading.model_types``) where it has the pair, else BLIP-2's."""
    table = TASK_DEFAULTS
    if model_type != "blip-2":
        from ..loading.model_types import by_config_name

        table = {**TASK_DEFAULTS, **by_config_name(model_type).task_defaults}
    if task not in TASKS or (task, llm_type) not in table:
        raise ValueError(
            f"no decoding defaults for task {task!r} with LLM {llm_type!r} ({model_type}): tasks {TASKS}, "
            f"LLMs {LLM_TYPES}"
        )
    return table[(task, llm_type)]


# the fields a None resolves from the task's defaults
_RESOLVED = ("max_new_tokens", "min_new_tokens", "length_penalty", "repetition_penalty")
