"""The paddle Datasets of captioning and VQA: one split's samples (:class:`Blip2Dataset`), several as one
(:func:`concat_datasets`), and :func:`build_split`, which reads a split's annotation files into a dataset.

Annotation formats and their parsing are in :mod:`blip2_data.annotations`.
"""

from __future__ import annotations

import bisect
import copy
import logging
import os
from collections.abc import Sequence
from typing import Any, Callable

from .annotations import Origin, split_samples
from .errors import SKIPPED_KEY, BadSampleError, DatasetError
from .lazy_names import lazy_module_getattr
from .paddle_io import Dataset

logger = logging.getLogger(__name__)


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


def dataset_from_samples(
    name: str,
    split: str,
    files: Sequence[str],
    samples: list[dict],
    origins: list[Origin],
    skipped: list[str],
    **options: Any,
) -> Blip2Dataset:
    """A :class:`Blip2Dataset` of parsed samples; an error if none is left, a warning if rows were skipped."""
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
    **options: Any,
) -> Blip2Dataset:
    """One dataset of ``kind`` ("caption" or "vqa") for ``split`` from its annotation files."""
    skipped: list[str] = []
    samples, origins = split_samples(kind, split, image_root, annotation_files, skip_bad_samples, skipped)
    return dataset_from_samples(
        name, split, annotation_files, samples, origins, skipped, skip_bad_samples=skip_bad_samples, **options
    )


# These lived here before the evaluation sources and loader got modules of their own; blip2-eval imports them
# from here. Resolved on first use: load.py imports this module, so importing it back here would be circular.
__getattr__ = lazy_module_getattr(
    __name__,
    {"EVAL_SOURCES": ".dataset_sources", "fetch_eval_files": ".prepare", "load_eval_dataset": ".load"},
)
