"""OK-VQA answer lemmatisation as LAVIS applies it: nouns and verbs to their lemma with spaCy's en_core_web_sm.

spaCy's English model is downloaded from GitHub (``python -m spacy download en_core_web_sm``); where it cannot
be imported the fallback is to leave answers as generated, and the metrics say so ("lemmatizer"), because a
different lemmatiser would move the score in another way than LAVIS's and hide that it differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

SPACY_MODEL = "en_core_web_sm"
LEMMATIZED_POS = ("NOUN", "VERB")


def lemmatize_with(nlp: Callable[[str], Any], answer: str) -> str:
    """Each noun or verb token replaced by its lemma, other tokens kept, joined by spaces (LAVIS's rule)."""
    return " ".join(token.lemma_ if token.pos_ in LEMMATIZED_POS else token.text for token in nlp(answer))


def load_spacy() -> tuple[Callable[[str], Any] | None, str]:
    """(nlp, description) or (None, why not)."""
    try:
        import spacy

        nlp = spacy.load(SPACY_MODEL)
    except Exception as error:  # ImportError, or OSError when the model package is absent
        return (
            None,
            f"none: spaCy {SPACY_MODEL} not available ({type(error).__name__}: {error}); answers kept as generated",
        )
    return nlp, f"spacy {spacy.__version__} {SPACY_MODEL} {nlp.meta.get('version', '?')}: nouns and verbs lemmatised"


class Lemmatizer:
    """Callable on a list of answers; ``description`` is written into the metrics."""

    def __init__(self, nlp: Callable[[str], Any] | None = None, description: str | None = None) -> None:
        if nlp is None and description is None:
            nlp, description = load_spacy()
        self.nlp = nlp
        self.description = description or "custom"

    @property
    def active(self) -> bool:
        return self.nlp is not None

    def __call__(self, answers: Sequence[str]) -> list[str]:
        if self.nlp is None:
            return list(answers)
        return [lemmatize_with(self.nlp, answer) for answer in answers]
