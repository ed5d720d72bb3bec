"""Caption and question cleaning as LAVIS's BLIP processors do it, and the BLIP-2 prompts."""

from __future__ import annotations

import re
from dataclasses import dataclass

CAPTION_PROMPT = "a photo of "
VQA_PROMPT = "Question: {} Answer:"
DEFAULT_MAX_WORDS = 50

_PUNCTUATION = re.compile(r"([.!\"()*#:;~])")
_SPACES = re.compile(r"\s{2,}")


def pre_caption(caption: str, max_words: int = DEFAULT_MAX_WORDS) -> str:
    """Lower-case, punctuation to spaces, collapse whitespace, keep the first ``max_words`` words."""
    caption = _PUNCTUATION.sub(" ", caption.lower())
    caption = _SPACES.sub(" ", caption)
    caption = caption.rstrip("\n").strip(" ")
    words = caption.split(" ")
    if len(words) > max_words:
        caption = " ".join(words[:max_words])
    return caption


def pre_question(question: str, max_words: int = DEFAULT_MAX_WORDS) -> str:
    """Lower-case, drop punctuation (no space left in its place), collapse whitespace, keep ``max_words`` words."""
    question = _PUNCTUATION.sub("", question.lower())
    # LAVIS only strips trailing spaces; collapsing runs too keeps "what  is" and "what is" one question.
    question = _SPACES.sub(" ", question).strip(" ")
    words = question.split(" ")
    if len(words) > max_words:
        question = " ".join(words[:max_words])
    return question


def apply_prompt(prompt: str, text: str) -> str:
    """``"Question: {} Answer:"`` is filled with ``text``; a plain prefix such as ``"a photo of "`` is prepended."""
    return prompt.format(text) if "{}" in prompt else prompt + text


@dataclass
class TextProcessor:
    """Cleans ``text_input`` of a sample: ``kind="caption"`` uses :func:`pre_caption`, ``"question"``
    :func:`pre_question`. ``prompt`` (rarely wanted: the collator adds prompts) is applied after cleaning."""

    kind: str = "caption"
    max_words: int = DEFAULT_MAX_WORDS
    prompt: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("caption", "question"):
            raise ValueError(f"TextProcessor kind must be 'caption' or 'question', got {self.kind!r}")

    def __call__(self, text: str) -> str:
        clean = pre_caption if self.kind == "caption" else pre_question
        cleaned = clean(text, self.max_words)
        return apply_prompt(self.prompt, cleaned) if self.prompt else cleaned
