"""The entry points: ``load_dataset`` (PaddleMIX / LAVIS's, each name mapped explicitly to its own format) and
``load_eval_dataset`` for the evaluation-only sets (NoCaps, OK-VQA, GQA, Flickr30K)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Union

from .annotations import coco_caption_file_samples, read_json, resolve_images
from .dataset_sources import EVAL_SOURCES
from .datasets import Blip2Dataset, build_split, dataset_from_samples
from .errors import DATA_FILES_OPTION, DatasetError
from .prepare import fetch_eval_files, prepare_dataset

# name → annotation kind. An explicit table: PaddleMIX's lookup by module scan made "vg_caption" load COCO.
DATASET_KINDS: dict[str, str] = {
    "coco_caption": "caption",
    "vg_caption": "caption",
    "coco_vqa": "vqa",
    "custom_caption": "caption",  # any caption set in coco_karpathy format; needs data_files
    "synthetic_shapes": "caption",  # generated (blip2_data.synthetic), not downloaded
}
ALIASES = {"custom": "custom_caption", "coco_karpathy": "custom_caption"}
SPLITS = ("train", "val", "test")

DataFile = Sequence[Union[str, Sequence[str]]]  # [image_root, annotation json (or list of them), split]


def _check_entry(name: str, index: int, entry: Any) -> tuple[str, list[str], str]:
    if not isinstance(entry, (list, tuple)) or len(entry) != 3:
        raise DatasetError(f"{name}: data_files[{index}] should be [image_root, annotation_json, split], got {entry!r}")
    image_root, annotations, split = entry
    if split not in SPLITS:
        raise DatasetError(f"{name}: data_files[{index}] split must be one of {SPLITS}, got {split!r}")
    annotations = [annotations] if isinstance(annotations, (str, os.PathLike)) else list(annotations)
    if not annotations:
        raise DatasetError(f"{name}: data_files[{index}] names no annotation file")
    if not os.path.isdir(image_root):
        raise DatasetError(f"{name}: data_files[{index}] image root is not a directory: {image_root}")
    return str(image_root), [str(a) for a in annotations], split


def load_dataset(
    name: str,
    data_files: Sequence[DataFile] | None = None,
    splits: Sequence[str] | None = None,
    *,
    image_processor: Callable[[str], Any] | None = None,
    text_processor: Callable[[str], str] | None = None,
    skip_bad_samples: bool = False,
    check_images: bool = False,
    download: bool = True,
    cache_dir: str | os.PathLike | None = None,
    checksums: Mapping[str, str] | None = None,
    progress: bool = True,
    **webdataset_options: Any,
) -> list[Blip2Dataset]:
    """One dataset per ``data_files`` entry ``[image_root, annotation_json, split]`` (PaddleMIX's convention).

    ``name``: ``coco_caption``, ``vg_caption``, ``coco_vqa`` or ``custom_caption`` (alias ``custom``).
    ``splits`` keeps only entries of those splits; without ``data_files`` it names the splits to download
    (default ``["train"]``) into ``cache_dir`` (default ``$BLIP2_HOME/datasets/<coco|vg>``).
    ``skip_bad_samples``: malformed rows are skipped at load time and bad images at iteration time, each
    counted and reported, instead of raising. ``check_images`` stats every image now instead of on first use.

    ``webdataset``: ``data_files`` are tar shards (paths, brace patterns ``shards/{00000..00099}.tar`` or
    folders); returns ``[Blip2WebDataset]``, a paddle IterableDataset of the train split. ``webdataset_options``
    go to it (``captions``, ``shuffle``, ``shuffle_buffer``, ``shuffle_shards``, ``seed``, ``rank``,
    ``world_size``, ``num_workers``, ``track_yielded``; see :mod:`blip2_data.webdataset_source`).
    """
    name = ALIASES.get(name, name)
    if name == "webdataset":
        return [
            load_webdataset(
                data_files,
                splits,
                image_processor=image_processor,
                text_processor=text_processor,
                skip_bad_samples=skip_bad_samples,
                **webdataset_options,
            )
        ]
    if webdataset_options:
        raise DatasetError(f"{name}: unknown options {sorted(webdataset_options)} (they are webdataset's)")
    if name not in DATASET_KINDS:
        raise DatasetError(
            f"unknown dataset {name!r}; known: {sorted([*DATASET_KINDS, 'webdataset'])} (and aliases {sorted(ALIASES)})"
        )
    if splits is not None:
        bad = [s for s in splits if s not in SPLITS]
        if bad:
            raise DatasetError(f"unknown splits {bad}; choose from {SPLITS}")
    if data_files is None and name == "synthetic_shapes":
        from .synthetic import synthetic_data_files

        data_files = synthetic_data_files(cache_dir, splits or ["train"])
    if data_files is None:
        if name == "custom_caption":
            raise DatasetError(f"custom_caption has nothing to download: pass {DATA_FILES_OPTION}")
        data_files = prepare_dataset(
            name, splits or ["train"], root=cache_dir, download=download, checksums=checksums, progress=progress
        )
    if isinstance(data_files, (list, tuple)) and len(data_files) == 3 and isinstance(data_files[2], str):
        if data_files[2] in SPLITS:  # a single entry given without the outer list
            data_files = [data_files]
    entries = [_check_entry(name, i, entry) for i, entry in enumerate(data_files)]
    if splits is not None:
        missing = sorted(set(splits) - {split for _, _, split in entries})
        if missing:
            raise DatasetError(f"{name}: no data_files entry for split(s) {missing}")
        entries = [e for e in entries if e[2] in splits]
    if name == "vg_caption" and any(split != "train" for _, _, split in entries):
        raise DatasetError("vg_caption has only a train split (captions of Visual Genome regions)")
    datasets = []
    for image_root, annotation_files, split in entries:
        dataset = build_split(
            name,
            DATASET_KINDS[name],
            split,
            image_root,
            annotation_files,
            skip_bad_samples=skip_bad_samples,
            image_processor=image_processor,
            text_processor=text_processor,
        )
        if check_images:
            dataset.check_images()
        datasets.append(dataset)
    return datasets


def load_webdataset(data_files: Any, splits: Sequence[str] | None, **options: Any) -> Any:
    """The ``webdataset`` entry of load_dataset: shards of a train split, streamed."""
    from .webdataset_dataset import Blip2WebDataset

    if not data_files:
        raise DatasetError("webdataset has nothing to download: pass data_files=['shards/{00000..00099}.tar']")
    if splits is not None and list(splits) != ["train"]:
        raise DatasetError(f"webdataset shards are a train split (pre-training data), asked for {list(splits)}")
    patterns = [data_files] if isinstance(data_files, (str, os.PathLike)) else list(data_files)
    if not all(isinstance(p, (str, os.PathLike)) for p in patterns):
        raise DatasetError(f"webdataset data_files are shard paths or patterns, got {data_files!r:.120}")
    return Blip2WebDataset(patterns, **options)


def build_eval_split(
    name: str, image_root: str, annotation_files: Sequence[str], *, skip_bad_samples: bool = False, **options: Any
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
        return dataset_from_samples(
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
    **options: Any,
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
