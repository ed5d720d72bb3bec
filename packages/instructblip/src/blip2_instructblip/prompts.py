"""InstructBLIP's prompts: what LAVIS evaluates it with, and instruction templates for tuning.

Paddle-free (the command-line parsers and the model-type registration import it). Sources:
``lavis/projects/instructblip/qa_okvqa_*_eval.yaml`` (``prompt: "Question: {} Short Answer:"``, also GQA's and
VQAv2's in the paper) and ``caption_coco_*_eval_*.yaml`` (``prompt: "A short image caption."``). The tuning
templates follow the paper's (Dai et al. 2023, appendix: several phrasings per task, one drawn per sample).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

VQA_PROMPT = "Question: {} Short Answer:"
CAPTION_PROMPT = "A short image caption."

# A few phrasings per task, as the paper's templates: the model learns the task, not one wording.
INSTRUCTION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "vqa": (
        "{}",
        "Question: {}",
        "{} A short answer to the question is",
        "Q: {} A:",
        "Question: {} Short Answer:",
        "Given the image, answer the following question with no more than three words. {}",
        "Based on the image, respond to this question with a short answer: {}. Answer:",
        "Use the provided image to answer the question: {} Provide your answer as short as possible:",
    ),
    "caption": (
        "<Image>A short image caption:",
        "<Image>A short image description:",
        "<Image>A photo of",
        "<Image>An image that shows",
        "<Image>Write a short description for the image.",
        "<Image>Write a description for the photo.",
        "<Image>Briefly describe the content of the image.",
    ),
}


def instruction(task: str, text: str = "", rng: random.Random | None = None) -> str:
    """One of ``task``'s templates, drawn with ``rng`` (LAVIS draws one per sample), filled with ``text`` (the
    question); the ``<Image>`` marker of the caption templates is the visual tokens' place, dropped here because
    they always come first."""
    templates: Sequence[str] = INSTRUCTION_TEMPLATES[task]
    template = (rng or random).choice(templates)
    return template.format(text).replace("<Image>", "").strip()
