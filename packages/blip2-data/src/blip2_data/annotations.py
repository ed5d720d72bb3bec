"""Annotation files → sample dicts: each format's rows parsed, with errors naming the file and row.

Formats:

- caption train (coco_karpathy_train.json, vg_caption.json, custom): a JSON list of
  ``{"image": relative path, "caption": str, "image_id": optional str|int}``; items get a contiguous int image_id.
- caption eval (coco_karpathy_val/test.json, flickr30k_test.json): ``{"image": ..., "caption": [captions]}``;
  items keep the original image id (the number in the file name, or an int ``image_id`` key) so generated
  captions can be scored.
- COCO caption format (NoCaps' nocaps_val_4500_captions.json): ``images`` with ``id`` and ``file_name``,
  ``annotations`` with ``image_id`` and ``caption``; one sample per image.
- VQA train (LAVIS vqa_train.json): ``{"question", "image", "answer"|"answers": list|str, "question_id"?}``.
- VQA eval: the official ``v2_OpenEnded_mscoco_*_questions.json`` (+ optional ``v2_mscoco_*_annotations.json``;
  OK-VQA's files are in this format too), or LAVIS's row lists (vqa_val_eval.json, vqa_test.json, GQA's
  testdev_balanced_questions.json); items keep question_id and image_id.

A ``.jsonl`` file (one row per line) is accepted wherever a JSON list is.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import SKIP_BAD_SAMPLES_OPTION, DatasetError


class RowProblem(Exception):
    """Raised by a row parser; the caller adds the file and row to the message."""


@dataclass(frozen=True)
class Origin:
    """Where a sample came from, for error messages."""

    file: str
    row: str  # "row 12" (index in a JSON list) or "line 13" (JSON Lines)

    def __str__(self) -> str:
        return f"{self.file}, {self.row}"


def read_json(path: str | os.PathLike) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"annotation file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


def read_rows(path: str | os.PathLike, skip_bad: bool, skipped: list[str]) -> list[tuple[Origin, Any]]:
    """Rows of a JSON list or a JSON Lines file. In JSON Lines a line that does not parse is one bad row."""
    path = str(path)
    if not path.endswith(".jsonl"):
        data = read_json(path)
        if not isinstance(data, list):
            raise DatasetError(f"{path}: expected a JSON list of rows, got a {type(data).__name__}")
        return [(Origin(path, f"row {i}"), row) for i, row in enumerate(data)]
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = list(f)
    except FileNotFoundError:
        raise DatasetError(f"annotation file not found: {path}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        origin = Origin(path, f"line {number}")
        try:
            rows.append((origin, json.loads(line)))
        except json.JSONDecodeError as e:
            report_bad_row(f"{origin}: not valid JSON: {e.msg}", skip_bad, skipped)
    return rows


def report_bad_row(message: str, skip_bad: bool, skipped: list[str]) -> None:
    if not skip_bad:
        raise DatasetError(f"{message} (pass {SKIP_BAD_SAMPLES_OPTION} to skip bad rows)")
    skipped.append(message)


def require(row: Any, key: str, kinds: type | tuple[type, ...]) -> Any:
    if not isinstance(row, dict):
        raise RowProblem(f"expected a JSON object, got {type(row).__name__}: {str(row)[:80]}")
    if key not in row:
        raise RowProblem(f"missing key {key!r} (keys: {sorted(row)})")
    value = row[key]
    if not isinstance(value, kinds) or isinstance(value, bool):
        names = kinds.__name__ if isinstance(kinds, type) else " or ".join(k.__name__ for k in kinds)
        raise RowProblem(f"key {key!r} should be {names}, got {type(value).__name__}: {str(value)[:80]}")
    if isinstance(value, str) and not value.strip():
        raise RowProblem(f"key {key!r} is empty")
    return value


def string_list(row: dict, key: str) -> list[str]:
    value = require(row, key, (list, str))
    values = [value] if isinstance(value, str) else value
    if not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise RowProblem(f"key {key!r} should be a non-empty string or list of non-empty strings, got {values!r:.80}")
    return values


_TRAILING_NUMBER = re.compile(r"(\d+)\.[A-Za-z]+$")


def eval_image_id(row: dict) -> int:
    """The original id: an int-like ``image_id`` key, else the number ending the file name (COCO_val2014_0005.jpg)."""
    if "image_id" in row and str(row["image_id"]).isdigit():
        return int(row["image_id"])
    match = _TRAILING_NUMBER.search(row["image"])
    if not match:
        raise RowProblem(f"cannot derive an image id from {row['image']!r}: add an integer 'image_id' key")
    return int(match.group(1))


def parse_rows(
    rows: Iterable[tuple[Origin, Any]], parse: Callable[[Any], dict], skip_bad: bool, skipped: list[str]
) -> tuple[list[dict], list[Origin]]:
    samples, origins = [], []
    for origin, row in rows:
        try:
            sample = parse(row)
        except RowProblem as problem:
            report_bad_row(f"{origin}: {problem}", skip_bad, skipped)
            continue
        samples.append(sample)
        origins.append(origin)
    return samples, origins


def assign_contiguous_ids(samples: list[dict], key: str) -> None:
    """Training ids 0..N-1 in order of first appearance (keyed by the row's id, else by the image path)."""
    ids: dict[Any, int] = {}
    for sample in samples:
        sample["image_id"] = ids.setdefault(sample.pop(key), len(ids))


# Row parsers: each returns the sample dict with the image path still relative.
def caption_train_row(row: Any) -> dict:
    image, caption = require(row, "image", str), require(row, "caption", str)
    return {"image": image, "text_input": caption, "_id_key": row.get("image_id", image)}


def caption_eval_row(row: Any) -> dict:
    image = require(row, "image", str)
    return {"image": image, "image_id": eval_image_id(row), "captions": string_list(row, "caption")}


def answers_of(row: dict) -> list[str]:
    return string_list(row, "answer" if "answer" in row or "answers" not in row else "answers")


def answer_weights(answers: list[str]) -> tuple[list[str], list[float], str]:
    """LAVIS's VQA targets: unique answers weighted by how many annotators gave them; the most common one."""
    counts = Counter(answers)
    unique = list(counts)
    return unique, [counts[a] / len(answers) for a in unique], counts.most_common(1)[0][0]


def vqa_train_row(row: Any) -> dict:
    question, image = require(row, "question", str), require(row, "image", str)
    unique, weights, top = answer_weights(answers_of(row))
    sample = {"image": image, "text_input": question, "answers": unique, "weights": weights, "text_output": top}
    sample["question_id"] = int(require(row, "question_id", (int, str))) if "question_id" in row else -1
    sample["_id_key"] = image
    return sample


def vqa_eval_row(row: Any) -> dict:
    sample = {
        "image": require(row, "image", str),
        "text_input": require(row, "question", str),
        "question_id": int(require(row, "question_id", (int, str))),
    }
    sample["image_id"] = eval_image_id(row)
    if "answer" in row or "answers" in row:
        sample["answers"] = answers_of(row)
    return sample


def files_samples(
    files: Sequence[str], parse: Callable[[Any], dict], skip_bad: bool, skipped: list[str]
) -> tuple[list[dict], list[Origin]]:
    """The parsed rows of several JSON / JSON Lines files, in order."""
    samples, origins = [], []
    for file in files:
        file_samples, file_origins = parse_rows(read_rows(file, skip_bad, skipped), parse, skip_bad, skipped)
        samples += file_samples
        origins += file_origins
    return samples, origins


def official_question_image(subtype: str, image_id: int) -> str:
    return f"{subtype}/COCO_{subtype}_{image_id:012d}.jpg"


def vqa_eval_samples(files: Sequence[str], skip_bad: bool, skipped: list[str]) -> tuple[list[dict], list[Origin]]:
    """Official VQAv2 questions (+ annotations) files, or LAVIS-style row lists."""
    first = read_json(files[0]) if not str(files[0]).endswith(".jsonl") else None
    if not (isinstance(first, dict) and "questions" in first):
        return files_samples(files, vqa_eval_row, skip_bad, skipped)

    questions_file = str(files[0])
    answers = official_answers(files[1] if len(files) > 1 else sibling_annotations(questions_file))
    subtype = first.get("data_subtype") or guess_subtype(questions_file)

    def parse(row: Any) -> dict:
        question_id = require(row, "question_id", int)
        image_id = require(row, "image_id", int)
        sample = {
            "image": official_question_image(subtype, image_id),
            "image_id": image_id,
            "question_id": question_id,
            "text_input": require(row, "question", str),
        }
        if answers is not None:
            if question_id not in answers:
                raise RowProblem(f"question_id {question_id} has no entry in the annotations file")
            sample["answers"] = answers[question_id]
        return sample

    if not isinstance(first["questions"], list):
        raise DatasetError(f"{questions_file}: 'questions' should be a list")
    rows = [(Origin(questions_file, f"questions[{i}]"), row) for i, row in enumerate(first["questions"])]
    return parse_rows(rows, parse, skip_bad, skipped)


def sibling_annotations(questions_file: str) -> str | None:
    """v2_OpenEnded_mscoco_val2014_questions.json → v2_mscoco_val2014_annotations.json beside it, if present."""
    path = Path(questions_file)
    candidate = path.with_name(path.name.replace("OpenEnded_", "").replace("_questions", "_annotations"))
    return str(candidate) if candidate != path and candidate.is_file() else None


def guess_subtype(questions_file: str) -> str:
    match = re.search(r"(train2014|val2014|test2015|test-dev2015)", Path(questions_file).name)
    if not match:
        raise DatasetError(f"{questions_file}: no 'data_subtype' key and none in the file name (e.g. val2014)")
    # test-dev questions use the test2015 images.
    return match.group(1).replace("test-dev2015", "test2015")


def official_answers(file: str | None) -> dict[int, list[str]] | None:
    if file is None:
        return None
    data = read_json(file)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DatasetError(f"{file}: expected the official VQAv2 annotations format with an 'annotations' list")
    answers = {}
    for i, row in enumerate(data["annotations"]):
        try:
            question_id = require(row, "question_id", int)
            answer_rows = require(row, "answers", list)
            answers[question_id] = [require(a, "answer", str) for a in answer_rows]
        except RowProblem as problem:
            raise DatasetError(f"{file}, annotations[{i}]: {problem}") from None
    return answers


def coco_caption_file_samples(path: str, skip_bad: bool, skipped: list[str]) -> tuple[list[dict], list[Origin]]:
    """Eval samples from a COCO-format caption file: one per image, its captions gathered from ``annotations``."""
    data = read_json(path)
    if not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise DatasetError(f"{path}: expected COCO caption format with 'images' and 'annotations' lists")
    captions: dict[int, list[str]] = {}
    for i, row in enumerate(data["annotations"]):
        try:
            image_id, caption = require(row, "image_id", int), require(row, "caption", str)
            captions.setdefault(image_id, []).append(caption)
        except RowProblem as problem:
            report_bad_row(f"{path}, annotations[{i}]: {problem}", skip_bad, skipped)

    def parse(row: Any) -> dict:
        image_id = require(row, "id", int)
        if image_id not in captions:
            raise RowProblem(f"image {image_id} has no caption in 'annotations'")
        sample = {"image": require(row, "file_name", str), "image_id": image_id, "captions": captions[image_id]}
        if isinstance(row.get("domain"), str):
            sample["domain"] = row["domain"]  # NoCaps: in-domain, near-domain, out-domain
        return sample

    rows = [(Origin(path, f"images[{i}]"), row) for i, row in enumerate(data["images"])]
    return parse_rows(rows, parse, skip_bad, skipped)


def resolve_images(samples: list[dict], image_root: str) -> None:
    for sample in samples:
        sample["image"] = os.path.join(image_root, sample["image"])


def split_samples(
    kind: str, split: str, image_root: str, annotation_files: Sequence[str], skip_bad: bool, skipped: list[str]
) -> tuple[list[dict], list[Origin]]:
    """The samples of a ``kind`` ("caption" or "vqa") split: images under ``image_root``, training ids 0..N-1."""
    train = split == "train"
    if kind == "vqa" and not train:
        samples, origins = vqa_eval_samples(annotation_files, skip_bad, skipped)
    else:
        parse = {"caption": caption_train_row if train else caption_eval_row, "vqa": vqa_train_row}[kind]
        samples, origins = files_samples(annotation_files, parse, skip_bad, skipped)
    resolve_images(samples, image_root)
    if train:
        assign_contiguous_ids(samples, "_id_key")
    return samples, origins
