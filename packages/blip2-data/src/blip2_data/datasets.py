"""Annotation parsing and the paddle Datasets for captioning and VQA.

Formats:

- caption train (coco_karpathy_train.json, vg_caption.json, custom): a JSON list of
  ``{"image": relative path, "caption": str, "image_id": optional str|int}``; items get a contiguous int image_id.
- caption eval (coco_karpathy_val/test.json): ``{"image": ..., "caption": [captions]}``; items keep the original
  image id (the number in the file name, or an int ``image_id`` key) so generated captions can be scored.
- VQA train (LAVIS vqa_train.json): ``{"question", "image", "answer"|"answers": list|str, "question_id"?}``.
- VQA eval: the official ``v2_OpenEnded_mscoco_*_questions.json`` (+ optional ``v2_mscoco_*_annotations.json``),
  or LAVIS's row lists (vqa_val_eval.json, vqa_test.json); items keep question_id and image_id.

A ``.jsonl`` file (one row per line) is accepted wherever a JSON list is.
"""

from __future__ import annotations

import bisect
import copy
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from paddle.io import Dataset

from .errors import BadSampleError, DatasetError

logger = logging.getLogger(__name__)

SKIPPED_KEY = "_skipped"  # an item that is only a note "this sample was bad and skipped", dropped by the collator


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
        raise DatasetError(f"{message} (pass skip_bad_samples=True to skip bad rows)")
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


class Blip2Dataset(Dataset):
    """Samples of one split. Items are dicts; ``image`` is a path until an ``image_processor`` is set.

    ``image_processor(path) -> array`` runs in ``__getitem__`` (so in DataLoader workers); ``text_processor``
    cleans ``text_input``. A sample whose image cannot be read raises :class:`BadSampleError` naming the sample,
    its annotation row and the image, or with ``skip_bad_samples`` returns ``{"_skipped": message}``, which
    :class:`~blip2_data.collator.Blip2Collator` drops and counts.
    """

    def __init__(
        self,
        name: str,
        split: str,
        samples: list[dict],
        origins: list[Origin],
        *,
        skipped_rows: Sequence[str] = (),
        image_processor: Callable[[str], Any] | None = None,
        text_processor: Callable[[str], str] | None = None,
        skip_bad_samples: bool = False,
    ) -> None:
        super().__init__()
        self.name, self.split = name, split
        self.samples, self.origins = samples, origins
        self.skipped_rows = list(skipped_rows)
        self.image_processor, self.text_processor = image_processor, text_processor
        self.skip_bad_samples = skip_bad_samples

    def __len__(self) -> int:
        return len(self.samples)

    def describe(self, index: int) -> str:
        return f"{self.name} {self.split} sample {index} ({self.origins[index]})"

    def __getitem__(self, index: int) -> dict:
        sample = dict(self.samples[index])
        if self.image_processor is not None:
            try:
                sample["image"] = self.image_processor(sample["image"])
            except Exception as e:  # any decode/transform failure: say which sample, keep the cause
                message = f"{self.describe(index)}: cannot load image {sample['image']}: {type(e).__name__}: {e}"
                if self.skip_bad_samples:
                    return {SKIPPED_KEY: message}
                raise BadSampleError(message) from e
        if self.text_processor is not None and "text_input" in sample:
            sample["text_input"] = self.text_processor(sample["text_input"])
        return sample

    def with_processors(
        self,
        image_processor: Callable[[str], Any] | None = None,
        text_processor: Callable[[str], str] | None = None,
    ) -> Blip2Dataset:
        """A shallow copy with these processors (the samples are shared, not copied)."""
        other = copy.copy(self)
        other.image_processor, other.text_processor = image_processor, text_processor
        return other

    def check_images(self) -> list[str]:
        """Stat every image; with skip_bad_samples drop the missing ones (and return their notes), else raise."""
        missing = [i for i, s in enumerate(self.samples) if not os.path.isfile(s["image"])]
        notes = [f"{self.describe(i)}: image not found: {self.samples[i]['image']}" for i in missing]
        if notes and not self.skip_bad_samples:
            more = f" (and {len(notes) - 1} more)" if len(notes) > 1 else ""
            raise BadSampleError(notes[0] + more)
        keep = sorted(set(range(len(self.samples))) - set(missing))
        self.samples = [self.samples[i] for i in keep]
        self.origins = [self.origins[i] for i in keep]
        self.skipped_rows.extend(notes)
        if not self.samples:
            raise DatasetError(f"{self.name} {self.split}: none of the {len(notes)} images exist; first: {notes[0]}")
        return notes

    def coco_ground_truth(self) -> dict:
        """COCO-format captions (``images`` + ``annotations``) of an eval split, for pycocoevalcap-style scoring."""
        if not self.samples or "captions" not in self.samples[0]:
            raise DatasetError(f"{self.name} {self.split} has no reference captions (it is not a caption eval split)")
        images, annotations = [], []
        for sample in self.samples:
            images.append({"id": sample["image_id"]})
            for caption in sample["captions"]:
                annotations.append({"image_id": sample["image_id"], "caption": caption, "id": len(annotations)})
        return {"images": images, "annotations": annotations}

    def __repr__(self) -> str:
        return f"Blip2Dataset({self.name!r}, split={self.split!r}, {len(self)} samples)"


class ConcatDataset(Dataset):
    """Several datasets as one. Training image ids are offset so they stay contiguous and distinct."""

    def __init__(self, datasets: Sequence[Blip2Dataset]) -> None:
        super().__init__()
        if not datasets:
            raise DatasetError("concat_datasets needs at least one dataset")
        self.datasets = list(datasets)
        self.cumulative = []
        self.id_offsets = []
        total, offset = 0, 0
        for dataset in self.datasets:
            total += len(dataset)
            self.cumulative.append(total)
            # Only training splits have contiguous ids; eval ids are originals and must not be shifted.
            train = dataset.split == "train" and dataset.samples and "image_id" in dataset.samples[0]
            self.id_offsets.append(offset if train else 0)
            if train:
                offset += max(s["image_id"] for s in dataset.samples) + 1

    def __len__(self) -> int:
        return self.cumulative[-1]

    def locate(self, index: int) -> tuple[Blip2Dataset, int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        which = bisect.bisect_right(self.cumulative, index)
        start = self.cumulative[which - 1] if which else 0
        return self.datasets[which], index - start, self.id_offsets[which]

    def describe(self, index: int) -> str:
        dataset, local, _ = self.locate(index)
        return dataset.describe(local)

    def __getitem__(self, index: int) -> dict:
        dataset, local, offset = self.locate(index)
        item = dataset[local]
        if offset and "image_id" in item:
            item["image_id"] += offset
        return item


def concat_datasets(datasets: Sequence[Blip2Dataset]) -> ConcatDataset:
    """Combine datasets (e.g. COCO and VG captions for pre-training) into one."""
    return ConcatDataset(datasets)


def resolve_images(samples: list[dict], image_root: str) -> None:
    for sample in samples:
        sample["image"] = os.path.join(image_root, sample["image"])


def finish(name: str, split: str, files: Sequence[str], samples, origins, skipped, **options) -> Blip2Dataset:
    total = len(samples) + len(skipped)
    if not samples:
        reason = f"all {total} rows were bad" if total else "it has no rows"
        raise DatasetError(f"{name} {split}: no samples in {', '.join(files)} ({reason})")
    if skipped:
        logger.warning(
            "%s %s: skipped %d of %d rows of %s; first: %s",
            name,
            split,
            len(skipped),
            total,
            ", ".join(files),
            skipped[0],
        )
    return Blip2Dataset(name, split, samples, origins, skipped_rows=skipped, **options)


def build_split(
    name: str,
    kind: str,
    split: str,
    image_root: str,
    annotation_files: Sequence[str],
    *,
    skip_bad_samples: bool,
    **options,
) -> Blip2Dataset:
    """One dataset of ``kind`` ("caption" or "vqa") for ``split`` from its annotation files."""
    skipped: list[str] = []
    samples: list[dict] = []
    origins: list[Origin] = []
    train = split == "train"
    if kind == "vqa" and not train:
        samples, origins = vqa_eval_samples(annotation_files, skip_bad_samples, skipped)
    else:
        parse = {"caption": caption_train_row if train else caption_eval_row, "vqa": vqa_train_row}[kind]
        for file in annotation_files:
            rows = read_rows(file, skip_bad_samples, skipped)
            file_samples, file_origins = parse_rows(rows, parse, skip_bad_samples, skipped)
            samples += file_samples
            origins += file_origins
    resolve_images(samples, image_root)
    if train:
        assign_contiguous_ids(samples, "_id_key")
    return finish(
        name, split, annotation_files, samples, origins, skipped, skip_bad_samples=skip_bad_samples, **options
    )


def official_question_image(subtype: str, image_id: int) -> str:
    return f"{subtype}/COCO_{subtype}_{image_id:012d}.jpg"


def vqa_eval_samples(files: Sequence[str], skip_bad: bool, skipped: list[str]) -> tuple[list[dict], list[Origin]]:
    """Official VQAv2 questions (+ annotations) files, or LAVIS-style row lists."""
    first = read_json(files[0]) if not str(files[0]).endswith(".jsonl") else None
    if not (isinstance(first, dict) and "questions" in first):
        samples, origins = [], []
        for file in files:
            rows = read_rows(file, skip_bad, skipped)
            file_samples, file_origins = parse_rows(rows, vqa_eval_row, skip_bad, skipped)
            samples += file_samples
            origins += file_origins
        return samples, origins

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


# -- Evaluation-only datasets: NoCaps val, OK-VQA val, GQA testdev-balanced, Flickr30K test --------------------
#
# Formats (each parsed by the loaders above, with the same bad-row errors):
# - NoCaps val: the official ``nocaps_val_4500_captions.json`` in COCO caption format (``images`` with ``id`` and
#   ``file_name``, ``annotations`` with ``image_id`` and ``caption``), or Karpathy-style rows.
# - OK-VQA val: the official ``OpenEnded_mscoco_val2014_questions.json`` + ``mscoco_val2014_annotations.json``
#   (the VQAv2 format, COCO val2014 images).
# - GQA testdev-balanced: LAVIS's ``testdev_balanced_questions.json`` rows (``image``, ``question``,
#   ``question_id``, ``answer``).
# - Flickr30K test: LAVIS's ``flickr30k_test.json`` rows (``image``, ``caption`` list), the Karpathy 1k split.

_LAVIS_STORAGE = "https://storage.googleapis.com/sfr-vision-language-research"


@dataclass(frozen=True)
class EvalSource:
    """An evaluation split: its kind, annotation URLs and where its images come from."""

    kind: str  # "caption" (eval rows with reference captions) or "vqa"
    split: str
    annotation_urls: tuple[str, ...]
    images: str  # how to get the images (they are not fetched by URL here unless COCO's)
    coco_images: bool = False  # COCO val2014 images: fetched with coco_caption's download


EVAL_SOURCES: dict[str, EvalSource] = {
    "nocaps": EvalSource(
        "caption",
        "val",
        ("https://nocaps.s3.amazonaws.com/nocaps_val_4500_captions.json",),
        "Open Images validation images listed in the annotation file (its coco_url fields), saved by file_name",
    ),
    "ok_vqa": EvalSource(
        "vqa",
        "val",
        (
            f"{_LAVIS_STORAGE}/LAVIS/datasets/okvqa/OpenEnded_mscoco_val2014_questions.json",
            f"{_LAVIS_STORAGE}/LAVIS/datasets/okvqa/mscoco_val2014_annotations.json",
        ),
        "COCO val2014",
        coco_images=True,
    ),
    "gqa": EvalSource(
        "vqa",
        "test",
        (f"{_LAVIS_STORAGE}/LAVIS/datasets/gqa/testdev_balanced_questions.json",),
        "GQA images.zip from https://downloads.cs.stanford.edu/nlp/data/gqa/images.zip, extracted",
    ),
    "flickr30k": EvalSource(
        "caption",
        "test",
        (f"{_LAVIS_STORAGE}/datasets/flickr30k_test.json",),
        "flickr30k-images/ from the Flickr30K request form (https://shannon.cs.illinois.edu/DenotationGraph/)",
    ),
}


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


def build_eval_split(
    name: str, image_root: str, annotation_files: Sequence[str], *, skip_bad_samples: bool = False, **options
) -> Blip2Dataset:
    """One evaluation dataset of ``name`` (a key of ``EVAL_SOURCES``) from local files."""
    if name not in EVAL_SOURCES:
        raise DatasetError(f"unknown evaluation dataset {name!r}; known: {sorted(EVAL_SOURCES)}")
    source = EVAL_SOURCES[name]
    if not os.path.isdir(image_root):
        raise DatasetError(f"{name}: image root is not a directory: {image_root}")
    first = str(annotation_files[0])
    if source.kind == "caption" and not first.endswith(".jsonl") and isinstance(read_json(first), dict):
        skipped: list[str] = []
        samples, origins = coco_caption_file_samples(first, skip_bad_samples, skipped)
        resolve_images(samples, image_root)
        return finish(
            name, source.split, [first], samples, origins, skipped, skip_bad_samples=skip_bad_samples, **options
        )
    return build_split(
        name, source.kind, source.split, image_root, annotation_files, skip_bad_samples=skip_bad_samples, **options
    )


def load_eval_dataset(
    name: str,
    data_files: Sequence | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    progress: bool = True,
    **options,
) -> Blip2Dataset:
    """NoCaps val, OK-VQA val, GQA testdev-balanced or Flickr30K test.

    ``data_files``: ``[image_root, annotation_json or [files]]``. Without it the annotations are downloaded into
    ``cache_dir`` (default ``$BLIP2_HOME/datasets/<name>``) and the images are expected under ``images/`` there
    (COCO's are downloaded as for coco_caption); what is missing is listed with where to put it.
    """
    if name not in EVAL_SOURCES:
        raise DatasetError(f"unknown evaluation dataset {name!r}; known: {sorted(EVAL_SOURCES)}")
    if data_files is not None:
        image_root, files = data_files[0], data_files[1]
        files = [files] if isinstance(files, (str, os.PathLike)) else list(files)
        return build_eval_split(name, str(image_root), [str(f) for f in files], **options)
    image_root, files = fetch_eval_files(name, cache_dir, download, progress)
    return build_eval_split(name, image_root, files, **options)


def fetch_eval_files(
    name: str, cache_dir: str | os.PathLike | None, download: bool, progress: bool
) -> tuple[str, list[str]]:
    """Annotation files on disk (downloaded when allowed) and the image folder, or an error saying what to place."""
    from .download import datasets_home, download_file, is_offline, prepare_dataset
    from .errors import ChecksumError, DatasetNotAvailableError

    source = EVAL_SOURCES[name]
    root = Path(cache_dir) if cache_dir is not None else datasets_home() / name
    offline = not download or is_offline()
    files, problems = [], []
    for url in source.annotation_urls:
        path = root / "annotations" / url.rsplit("/", 1)[1]
        files.append(str(path))
        if path.is_file():
            continue
        if offline:
            problems.append(f"  download {url}\n    to {path}")
            continue
        try:
            download_file(url, path, progress=progress)
        except ChecksumError:
            raise
        except OSError as error:
            problems.append(f"  download {url}\n    to {path}\n    failed: {type(error).__name__}: {error}")
    if source.coco_images:
        try:
            ((image_root, _, _),) = prepare_dataset("coco_caption", ["test"], download=download, progress=progress)
        except DatasetNotAvailableError as error:
            problems.append(str(error))
            image_root = ""
    else:
        image_root = str(root / "images")
        if not os.path.isdir(image_root):
            problems.append(f"  images: {source.images}\n    into {image_root}")
    if problems:
        raise DatasetNotAvailableError(
            f"{name} is not available offline. Place these files (or pass data_files=[image_root, annotation_json]):\n"
            + "\n".join(problems)
        )
    return image_root, files
