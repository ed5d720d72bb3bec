"""VQA fine-tuning: question + weighted answers per sample, the question into the Q-Former and the LLM prompt.

Answer weighting as LAVIS's VQA recipes (BLIP's VQA loss): each question's unique answers are weighted by the
share of annotators who gave them (blip2-data's ``answer_weights``); every answer is an LLM target, and the loss
is ``sum(weight * per-answer LM loss) / questions``. The answers of one question share its image features (the
model repeats them per row); a question with fewer answers than the batch's most is padded with weight-0 rows.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import paddle
import paddle.nn.functional as F

from blip2_data import BadSampleError, Blip2Collator, pre_question

from .data import (
    ERROR_KEY,
    IMAGE_EMBEDS_KEY,
    REPLACED_KEY,
    SKIPPED_BATCH_KEY,
    TrainingCollator,
    TrainingSamples,
    image_inputs,
)

ANSWER_WEIGHTS_KEY = "answer_weights"


class VqaTrainingSamples(TrainingSamples):
    """Items of a VQA dataset (blip2-data's ``vqa_train_row``): image, cleaned question, answers and weights."""

    def _load(self, epoch: int, index: int) -> dict[str, Any]:
        sample = self.dataset[index]
        image = self._image(sample, index, random.Random(f"{self.seed}:{epoch}:{index}"))
        question = pre_question(sample["text_input"], self.max_words)
        if not question or not sample.get("answers"):
            raise BadSampleError(f"{self._describe(index)}: empty question or no answer")
        return {
            **image,
            "text_input": question,
            "answers": list(sample["answers"]),
            "weights": [float(w) for w in sample["weights"]],
        }


class VqaCollator(TrainingCollator):
    """Batch of ``questions`` images and ``questions x most answers`` LLM rows.

    ``qformer_input_ids`` / ``qformer_attention_mask``: the questions in the Q-Former's (BERT) tokens, one row
    per image (left out without a ``qformer_collator``: the LLM alone reads the question); ``input_ids`` / ``labels``: prompt + answer for the LLM (the prompt masked), question-major.
    """

    def __init__(self, llm_collator: Blip2Collator, qformer_collator: Blip2Collator | None) -> None:
        super().__init__(llm_collator, "stage2")
        self.qformer_collator = qformer_collator

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        if any(SKIPPED_BATCH_KEY in item or ERROR_KEY in item for item in items):
            return super().__call__(items)
        notes = [note for item in items for note in item.pop(REPLACED_KEY, [])]
        most = max(len(item["answers"]) for item in items)
        rows, weights = [], []
        for item in items:
            answers = item["answers"] + [item["answers"][0]] * (most - len(item["answers"]))
            row_weights = item["weights"] + [0.0] * (most - len(item["weights"]))
            rows += [{"text_input": item["text_input"], "text_output": a} for a in answers]
            weights += row_weights
        llm = self.collator(rows)
        questions = {}
        if self.qformer_collator is not None:
            bert = self.qformer_collator([{"text_input": item["text_input"]} for item in items])
            questions = {"qformer_input_ids": bert["input_ids"], "qformer_attention_mask": bert["attention_mask"]}
        images = {key: [item[key] for item in items] for key in ("image", IMAGE_EMBEDS_KEY) if key in items[0]}
        return {
            **image_inputs(
                {"pixel_values": np.stack(images["image"]).astype(np.float32)} if "image" in images else images
            ),
            "input_ids": llm["input_ids"],
            "attention_mask": llm["attention_mask"],
            "labels": llm["labels"],
            **questions,
            ANSWER_WEIGHTS_KEY: np.asarray(weights, dtype=np.float32),
            "bad_samples": np.asarray([len(notes)], dtype=np.int64),
        }


def weighted_answer_loss(logits: paddle.Tensor, labels: paddle.Tensor, weights: paddle.Tensor) -> paddle.Tensor:
    """``sum(weight * mean token loss of the answer row) / questions`` (the weights of a question sum to 1).

    ``logits`` as ``Blip2ForConditionalGeneration`` returns them: a decoder-only LLM's cover the visual tokens
    and the text, position p predicting p + 1, so the labels align with the positions before the last L + 1."""
    total, length = logits.shape[1], labels.shape[1]
    if total > length:
        logits = logits[:, total - length - 1 : total - 1]
    valid = (labels != -100).astype("float32")
    tokens = F.cross_entropy(
        logits.astype("float32"), paddle.where(labels != -100, labels, paddle.zeros_like(labels)).unsqueeze(-1),
        reduction="none",
    ).squeeze(-1)  # fmt: skip
    per_row = (tokens * valid).sum(1) / valid.sum(1).clip(min=1.0)
    return (per_row * weights).sum() / weights.sum().clip(min=1e-6)
