"""Where each dataset's files come from: URLs, checksums, and where they go in the dataset's folder.

Checksums: the COCO 2014 image archives' md5 sums are the ones LAVIS's download scripts publish. For the LAVIS
annotation files and the Visual Genome archives no checksum is published that we could verify, so they are
checked against the size the server announces; pass ``checksums={"file name": "sha256:<hex>"}`` to
:func:`~blip2_data.prepare.prepare_dataset` to pin one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RemoteFile:
    """A file to fetch to ``path`` (relative to the dataset folder); archives are extracted into ``extract_to``."""

    url: str
    path: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    extract_to: str | None = None

    @property
    def name(self) -> str:
        return Path(self.path).name


@dataclass(frozen=True)
class SplitSource:
    """What one split needs: annotation files, image archives, and where the images end up."""

    annotations: Sequence[RemoteFile]
    archives: Sequence[RemoteFile] = field(default_factory=tuple)
    image_root: str = "images"


_LAVIS = "https://storage.googleapis.com/sfr-vision-language-research"
_COCO_TRAIN = RemoteFile(
    "http://images.cocodataset.org/zips/train2014.zip",
    "archives/train2014.zip",
    md5="0da8c0bd3d6becc4dcb32757491aca88",
    extract_to="images",
)
_COCO_VAL = RemoteFile(
    "http://images.cocodataset.org/zips/val2014.zip",
    "archives/val2014.zip",
    md5="a3d79f5ed8d289b7a7554ce06a5782b3",
    extract_to="images",
)
# LAVIS lists test2014's md5 for test2015.zip too, which cannot be right: no checksum for it.
_COCO_TEST2015 = RemoteFile(
    "http://images.cocodataset.org/zips/test2015.zip", "archives/test2015.zip", extract_to="images"
)


def _annotation(url: str) -> RemoteFile:
    return RemoteFile(url, "annotations/" + url.rsplit("/", 1)[1])


_VQA = f"{_LAVIS}/LAVIS/datasets/vqav2"

# Dataset name → folder under datasets_home() → split → sources. COCO captions and VQAv2 share the COCO images.
DATASET_SOURCES: dict[str, tuple[str, dict[str, SplitSource]]] = {
    "coco_caption": (
        "coco",
        {
            "train": SplitSource(
                [_annotation(f"{_LAVIS}/datasets/coco_karpathy_train.json")], [_COCO_TRAIN, _COCO_VAL]
            ),
            "val": SplitSource([_annotation(f"{_LAVIS}/datasets/coco_karpathy_val.json")], [_COCO_VAL]),
            "test": SplitSource([_annotation(f"{_LAVIS}/datasets/coco_karpathy_test.json")], [_COCO_VAL]),
        },
    ),
    "vg_caption": (
        "vg",
        {
            "train": SplitSource(
                [_annotation(f"{_LAVIS}/datasets/vg_caption.json")],
                [
                    RemoteFile(
                        "https://cs.stanford.edu/people/rak248/VG_100K_2/images.zip",
                        "archives/images.zip",
                        extract_to="images",
                    ),
                    RemoteFile(
                        "https://cs.stanford.edu/people/rak248/VG_100K_2/images2.zip",
                        "archives/images2.zip",
                        extract_to="images",
                    ),
                ],
            )
        },
    ),
    "coco_vqa": (
        "coco",
        {
            "train": SplitSource(
                [_annotation(f"{_VQA}/vqa_train.json"), _annotation(f"{_VQA}/vqa_val.json")], [_COCO_TRAIN, _COCO_VAL]
            ),
            "val": SplitSource(
                [
                    _annotation(f"{_VQA}/v2_OpenEnded_mscoco_val2014_questions.json"),
                    _annotation(f"{_VQA}/v2_mscoco_val2014_annotations.json"),
                ],
                [_COCO_VAL],
            ),
            "test": SplitSource([_annotation(f"{_VQA}/vqa_test.json")], [_COCO_TEST2015]),
        },
    ),
}


# Evaluation-only datasets (read by blip2_data.load.load_eval_dataset):
# - NoCaps val: the official ``nocaps_val_4500_captions.json`` in COCO caption format, or Karpathy-style rows.
# - OK-VQA val: the official ``OpenEnded_mscoco_val2014_questions.json`` + ``mscoco_val2014_annotations.json``
#   (the VQAv2 format, COCO val2014 images).
# - GQA testdev-balanced: LAVIS's ``testdev_balanced_questions.json`` rows (``image``, ``question``,
#   ``question_id``, ``answer``).
# - Flickr30K test: LAVIS's ``flickr30k_test.json`` rows (``image``, ``caption`` list), the Karpathy 1k split.


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
            f"{_LAVIS}/LAVIS/datasets/okvqa/OpenEnded_mscoco_val2014_questions.json",
            f"{_LAVIS}/LAVIS/datasets/okvqa/mscoco_val2014_annotations.json",
        ),
        "COCO val2014",
        coco_images=True,
    ),
    "gqa": EvalSource(
        "vqa",
        "test",
        (f"{_LAVIS}/LAVIS/datasets/gqa/testdev_balanced_questions.json",),
        "GQA images.zip from https://downloads.cs.stanford.edu/nlp/data/gqa/images.zip, extracted",
    ),
    "flickr30k": EvalSource(
        "caption",
        "test",
        (f"{_LAVIS}/datasets/flickr30k_test.json",),
        "flickr30k-images/ from the Flickr30K request form (https://shannon.cs.illinois.edu/DenotationGraph/)",
    ),
}
