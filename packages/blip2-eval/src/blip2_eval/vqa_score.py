"""``vqa-score``: score a results file against the official VQAv2 / OK-VQA files, or GQA-style answers.

Results: ``[{"question_id": int, "answer": str}, ...]`` (what ``blip2-eval vqa`` writes, and what the
official evaluation server takes).

Ground truth, either
- the official annotations ``{"annotations": [{"question_id", "answers": [{"answer": ...}] , "answer_type",
  "question_type"}]}`` (+ optionally the questions file ``{"questions": [{"question_id", ...}]}``, whose ids
  must then be the same set), scored by the official VQA accuracy; or
- a list of rows ``{"question_id", "answer": str | [str]}`` (LAVIS's ``*_eval.json``, GQA's testdev):
  lists are scored by VQA accuracy, single answers by exact match.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .json_files import EvalInputError, field, int_id, read_json, read_list
from .vqa_accuracy import CoverageError, VqaReference, exact_match_accuracy, vqa_accuracy

METRICS = ("auto", "vqa_accuracy", "exact_match")


def read_vqa_results(path: str | os.PathLike) -> dict[int, str]:
    """``{question_id: answer}``; a repeated question id is an error naming both rows."""
    answers: dict[int, str] = {}
    rows_of: dict[int, int] = {}
    for i, row in enumerate(read_list(path, "results")):
        where = f"{path}, row {i}"
        question_id = int_id(row, "question_id", where)
        answer = field(row, "answer", str, where)
        if question_id in answers:
            raise EvalInputError(f"{where}: question_id {question_id} already answered in row {rows_of[question_id]}")
        answers[question_id], rows_of[question_id] = answer, i
    return answers


def read_official_annotations(path: str | os.PathLike) -> dict[int, VqaReference]:
    references = {}
    for i, row in enumerate(read_list(path, "annotations", key="annotations")):
        where = f"{path}, annotations[{i}]"
        question_id = int_id(row, "question_id", where)
        answers = [
            field(a, "answer", str, f"{where}, answers[{j}]") for j, a in enumerate(field(row, "answers", list, where))
        ]
        if not answers:
            raise EvalInputError(f"{where}: no human answers")
        references[question_id] = VqaReference(
            answers, str(row.get("answer_type", "unknown")), str(row.get("question_type", "unknown"))
        )
    return references


def read_answer_rows(path: str | os.PathLike) -> dict[int, str | list[str]]:
    """LAVIS/GQA rows: ``{question_id: answer or [answers]}``."""
    answers: dict[int, str | list[str]] = {}
    for i, row in enumerate(read_list(path, "annotations")):
        where = f"{path}, row {i}"
        question_id = int_id(row, "question_id", where)
        key = "answer" if isinstance(row, dict) and "answer" in row else "answers"
        value = field(row, key, (str, list), where)
        if isinstance(value, list) and (not value or not all(isinstance(v, str) for v in value)):
            raise EvalInputError(f"{where}: key {key!r} should be a non-empty list of strings")
        answers[question_id] = value
    return answers


def question_ids(path: str | os.PathLike) -> list[int]:
    return [
        int_id(row, "question_id", f"{path}, questions[{i}]")
        for i, row in enumerate(read_list(path, "questions", key="questions"))
    ]


def is_official_annotations(path: str | os.PathLike) -> bool:
    data = read_json(path, "annotations")
    return isinstance(data, dict) and "annotations" in data


def score_vqa(
    predictions: Mapping[int, str],
    annotations: str | os.PathLike,
    questions: str | os.PathLike | None = None,
    metric: str = "auto",
) -> dict:
    """Metrics for ``predictions`` (``{question_id: answer}``) against the ground-truth files."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if is_official_annotations(annotations):
        references = read_official_annotations(annotations)
        if questions is not None:
            asked = set(question_ids(questions))
            if asked != set(references):
                only_q = sorted(asked - set(references))[:20]
                only_a = sorted(set(references) - asked)[:20]
                raise EvalInputError(
                    f"{questions} and {annotations} hold different questions: only in questions {only_q}, "
                    f"only in annotations {only_a}"
                )
        if metric == "exact_match":
            raise EvalInputError(f"{annotations}: official annotations hold 10 answers each: use vqa_accuracy")
        metrics = vqa_accuracy(predictions, references)
        metrics["metric"] = "vqa_accuracy"
        return metrics
    rows = read_answer_rows(annotations)
    lists = {q: a for q, a in rows.items() if isinstance(a, list)}
    if metric == "auto":
        metric = "vqa_accuracy" if len(lists) == len(rows) else "exact_match"
    if metric == "vqa_accuracy":
        if len(lists) != len(rows):
            single = next(q for q in rows if q not in lists)
            raise EvalInputError(f"{annotations}: question {single} has a single answer: use exact_match")
        metrics = vqa_accuracy(predictions, {q: VqaReference(a) for q, a in lists.items()})
    else:
        # several answers for a GQA-style row: the first is the reference
        metrics = exact_match_accuracy(predictions, {q: a if isinstance(a, str) else a[0] for q, a in rows.items()})
    metrics["metric"] = metric
    return metrics


def score_vqa_files(
    results: str | os.PathLike,
    annotations: str | os.PathLike,
    questions: str | os.PathLike | None = None,
    metric: str = "auto",
) -> dict:
    """``vqa-score``'s work: read ``results`` and score it; coverage errors name the results file."""
    predictions = read_vqa_results(results)
    try:
        return score_vqa(predictions, annotations, questions, metric)
    except CoverageError as error:
        raise EvalInputError(f"{results}: {error}") from None
