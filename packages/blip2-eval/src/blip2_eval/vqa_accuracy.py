"""VQA accuracy as the official VQAv2 evaluation computes it, and GQA's exact match.

Per question: each of the (usually 10) human answers is left out in turn; against the other humans the
prediction scores min(#humans who gave it / 3, 1); the question's accuracy is the mean over the leave-one-out
subsets. Reported in percent rounded to 2 decimals: overall, per answer type and per question type (the
mean of per-question accuracies in each group; this is the current official script and LAVIS, while a 2015
version of the official script used only the last subset's value for the per-type breakdowns).

Human answers are not normalised like predictions: the official script only applies the punctuation rule to
them, and only when the humans disagree (all 10 the same: used as written).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .vqa_normalize import normalize_answer, normalize_punctuation

DECIMALS = 2
HUMANS_FOR_FULL_CREDIT = 3


@dataclass(frozen=True)
class VqaReference:
    """One question's human answers and its types (from the official annotations file)."""

    answers: Sequence[str]
    answer_type: str = "unknown"
    question_type: str = "unknown"


def human_answers(answers: Sequence[str]) -> list[str]:
    answers = list(answers)
    if len(set(answers)) > 1:
        answers = [normalize_punctuation(a) for a in answers]
    return answers


def question_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """The official leave-one-out accuracy of one prediction, in [0, 1]."""
    if not answers:
        raise ValueError("a question needs at least one human answer")
    predicted = normalize_answer(prediction)
    humans = human_answers(answers)
    matches = [human == predicted for human in humans]
    total = sum(matches)
    # leaving out human i removes its match, if it was one
    scores = [min((total - left_out) / HUMANS_FOR_FULL_CREDIT, 1.0) for left_out in matches]
    return sum(scores) / len(scores)


def percent(values: Sequence[float]) -> float:
    return round(100 * sum(values) / len(values), DECIMALS)


def vqa_accuracy(predictions: Mapping[int, str], references: Mapping[int, VqaReference]) -> dict:
    """Official accuracy over ``references``' questions; every one must have a prediction.

    Returns ``{"overall", "perAnswerType", "perQuestionType", "num_questions"}`` (the official key names).
    """
    check_coverage(predictions, references)
    overall: list[float] = []
    by_answer_type: dict[str, list[float]] = defaultdict(list)
    by_question_type: dict[str, list[float]] = defaultdict(list)
    for question_id, reference in references.items():
        accuracy = question_accuracy(predictions[question_id], reference.answers)
        overall.append(accuracy)
        by_answer_type[reference.answer_type].append(accuracy)
        by_question_type[reference.question_type].append(accuracy)
    return {
        "overall": percent(overall),
        "perAnswerType": {kind: percent(values) for kind, values in sorted(by_answer_type.items())},
        "perQuestionType": {kind: percent(values) for kind, values in sorted(by_question_type.items())},
        "num_questions": len(overall),
    }


def exact_match_accuracy(predictions: Mapping[int, str], answers: Mapping[int, str]) -> dict:
    """GQA: 1 when the normalised prediction equals the normalised answer (LAVIS's GQA metric)."""
    check_coverage(predictions, answers)
    hits = [float(normalize_answer(predictions[q]) == normalize_answer(answers[q])) for q in answers]
    return {"overall": percent(hits), "num_questions": len(hits)}


class CoverageError(ValueError):
    """Predictions and questions do not match one to one."""


def check_coverage(predictions: Mapping[int, str], references: Mapping[int, object], shown: int = 20) -> None:
    missing = [q for q in references if q not in predictions]
    extra = [q for q in predictions if q not in references]
    if not missing and not extra:
        return
    lines = []
    if missing:
        more = f" (and {len(missing) - shown} more)" if len(missing) > shown else ""
        lines.append(f"{len(missing)} question(s) have no answer: {missing[:shown]}{more}")
    if extra:
        more = f" (and {len(extra) - shown} more)" if len(extra) > shown else ""
        lines.append(f"{len(extra)} answer(s) are for questions not in the ground truth: {extra[:shown]}{more}")
    raise CoverageError("; ".join(lines))
