"""Instruction tuning (InstructBLIP, Dai et al. 2023): ``blip2-train finetune-instruct``.

The ViT and the LLM stay frozen; the Q-Former (with its text parts) and the projection train, the instruction beside
the queries and in front of the LLM's target. Each sample's instruction is one of its task's templates
(``blip2_instructblip.prompts``), drawn per sample and epoch as LAVIS draws them, so the model learns the task and
not one wording: a VQA sample's question goes into a VQA template and its answers are the targets (weighted as in
VQA fine-tuning); a caption sample gets a caption instruction and its caption is the target. Everything else is
the VQA fine-tuning's (``vqa``): its collator puts the same text (here the instruction) into the Q-Former's tokens
and the LLM's prompt (``--prompt "{}"``). The trained model is saved as an InstructBLIP (config ``model_type:
instructblip``), which blip2-predict, blip2-serve and blip2-eval then load as such.
"""

from __future__ import annotations

import random
from typing import Any

from .data import TrainingSamples
from .vqa import VqaTrainingSamples


class InstructTrainingSamples(VqaTrainingSamples):
    """VQA items (question, answers, weights) or caption items (caption), each with an instruction drawn from its
    task's templates as ``text_input``."""

    def _load(self, epoch: int, index: int) -> dict[str, Any]:
        from blip2_instructblip import instruction

        rng = random.Random(f"{self.seed}:{epoch}:{index}:instruction")
        if self.dataset[index].get("answers"):
            item = super()._load(epoch, index)
            return {**item, "text_input": instruction("vqa", item["text_input"], rng)}
        item = TrainingSamples._load(self, epoch, index)  # a caption sample: the caption is the answer
        caption = item.pop("text_input")
        return {**item, "text_input": instruction("caption", rng=rng), "answers": [caption], "weights": [1.0]}


def as_instructblip(model: Any) -> Any:
    """The stage-2 model, built with the Q-Former's text parts, as an InstructBLIP: the same layers and weights
    (no copy: InstructBLIP's class adds no layer), read through InstructBLIP's config and class."""
    import dataclasses

    from blip2_instructblip import InstructBlipConfig, InstructBlipForConditionalGeneration

    values = {f.name: getattr(model.config, f.name) for f in dataclasses.fields(model.config)}
    model.config = InstructBlipConfig(**{**values, "qformer_text_input": True})
    model.__class__ = InstructBlipForConditionalGeneration  # only what it reads changes, not what it holds
    return model
