"""The evaluation datasets: which blip2-data dataset and split each one reads, and its items and ground truth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .json_files import EvalInputError


@dataclass(frozen=True)
class EvalDataset:
    task: str  # "caption", "vqa" or "retrieval"
    data_name: str  # the blip2-data dataset that reads it
    split: str
    metric: str = ""  # VQA: "vqa_accuracy" or "exact_match"
    lemmatize: bool = False  # OK-VQA: LAVIS lemmatises the answers
    generated: bool = False  # blip2-data's synthetic_shapes files (made offline on first use), not a download


EVAL_DATASETS = {
    "coco_caption": EvalDataset("caption", "coco_caption", "test"),  # Karpathy test, 5000 images
    "nocaps": EvalDataset("caption", "nocaps", "val"),
    "custom_caption": EvalDataset("caption", "custom_caption", "test"),
    # blip2-data's generated shapes (the default model's data): offline, made on first use
    "synthetic_shapes": EvalDataset("caption", "synthetic_shapes", "test", generated=True),
    "synthetic_shapes_vqa": EvalDataset("vqa", "coco_vqa", "test", "vqa_accuracy", generated=True),
    "synthetic_shapes_retrieval": EvalDataset("retrieval", "synthetic_shapes", "test", generated=True),
    "coco_vqa": EvalDataset("vqa", "coco_vqa", "val", "vqa_accuracy"),
    "ok_vqa": EvalDataset("vqa", "ok_vqa", "val", "vqa_accuracy", lemmatize=True),
    "gqa": EvalDataset("vqa", "gqa", "test", "exact_match"),  # testdev-balanced
    "coco_retrieval": EvalDataset("retrieval", "coco_caption", "test"),  # Karpathy 5k test
    "flickr30k": EvalDataset("retrieval", "flickr30k", "test"),  # 1k test
}


def eval_dataset(task: str, name: str) -> EvalDataset:
    known = sorted(n for n, d in EVAL_DATASETS.items() if d.task == task)
    if name not in EVAL_DATASETS or EVAL_DATASETS[name].task != task:
        raise EvalInputError(f"{task}: unknown dataset {name!r}; choose from {known}")
    return EVAL_DATASETS[name]


def is_eval_only(spec: EvalDataset) -> bool:
    """NoCaps, OK-VQA, GQA and Flickr30K come from blip2-data's evaluation loaders, the rest from load_dataset."""
    from blip2_data.datasets import EVAL_SOURCES

    return spec.data_name in EVAL_SOURCES


def resolve_files(spec: EvalDataset, data_files: Sequence[str] | None, split: str) -> tuple[str, list[str]]:
    """(image root, annotation files): as given (IMAGE_ROOT ANNOTATION...), or downloaded by blip2-data."""
    if data_files:
        if len(data_files) < 2:
            raise EvalInputError("--data_files takes IMAGE_ROOT ANNOTATION [ANNOTATION ...]")
        return str(data_files[0]), [str(f) for f in data_files[1:]]
    from blip2_data import DatasetNotAvailableError, prepare_dataset
    from blip2_data.datasets import fetch_eval_files

    if spec.generated:
        from blip2_data.synthetic import synthetic_split_files

        files = synthetic_split_files(None, split)
        kinds = ("questions", "annotations") if spec.task == "vqa" else ("captions",)
        return files["image_root"], [files[kind] for kind in kinds]
    try:
        if is_eval_only(spec):
            return fetch_eval_files(spec.data_name, None, download=True, progress=True)
        ((image_root, files, _),) = prepare_dataset(spec.data_name, [split])
    except DatasetNotAvailableError as error:
        from blip2_data.errors import DATA_FILES_OPTION

        raise EvalInputError(str(error).replace(DATA_FILES_OPTION, "--data_files IMAGE_ROOT ANNOTATION")) from None
    return image_root, list(files)


def load_split(spec: EvalDataset, image_root: str, files: Sequence[str], split: str) -> Any:
    from blip2_data import DatasetError, load_dataset
    from blip2_data.datasets import load_eval_dataset

    try:
        if is_eval_only(spec):
            return load_eval_dataset(spec.data_name, [image_root, list(files)])
        (dataset,) = load_dataset(spec.data_name, [[image_root, list(files), split]], splits=[split])
    except DatasetError as error:
        raise EvalInputError(str(error)) from None
    return dataset


def unique_by(samples: Sequence[dict], key: str) -> list[int]:
    """Indices of the first sample of each ``key`` value (one caption per image, one answer per question)."""
    seen, keep = set(), []
    for index, sample in enumerate(samples):
        if sample[key] not in seen:
            seen.add(sample[key])
            keep.append(index)
    return keep
