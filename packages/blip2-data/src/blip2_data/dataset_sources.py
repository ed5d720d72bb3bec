"""Where each dataset's files come from: URLs, checksums, and where they go in the dataset's folder.

Checksums: every md5 LAVIS publishes is checked: the Karpathy COCO caption files (``lavis/configs/datasets/coco/
defaults_cap.yaml``) and the COCO 2014 image archives (its download scripts and the commented entries of that
yaml). LAVIS publishes none for its VQAv2, Visual Genome, Flickr30K, OK-VQA and GQA files
(``lavis/configs/datasets/{coco/defaults_vqa,vg/defaults_caption,flickr30k/defaults,...}.yaml``) nor Stanford for
the VG archives: those are checked against the size the server announces; pass ``checksums={"file name":
"sha256:<hex>"}`` to :func:`~blip2_data.prepare.prepare_dataset` to pin one.

URLs are LAVIS's own (the yamls above), so a file fetched here is the file LAVIS trains and evaluates on.
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


def _annotation(url: str, md5: str | None = None) -> RemoteFile:
    return RemoteFile(url, "annotations/" + url.rsplit("/", 1)[1], md5=md5)


_VQA = f"{_LAVIS}/LAVIS/datasets/vqav2"

# Dataset name → folder under datasets_home() → split → sources. COCO captions and VQAv2 share the COCO images.
DATASET_SOURCES: dict[str, tuple[str, dict[str, SplitSource]]] = {
    "coco_caption": (
        "coco",
        {
            # md5s: LAVIS's lavis/configs/datasets/coco/defaults_cap.yaml
            "train": SplitSource(
                [_annotation(f"{_LAVIS}/datasets/coco_karpathy_train.json", "aa31ac474cf6250ebb81d18348a07ed8")],
                [_COCO_TRAIN, _COCO_VAL],
            ),
            "val": SplitSource(
                [_annotation(f"{_LAVIS}/datasets/coco_karpathy_val.json", "b273847456ef5580e33713b1f7de52a0")],
                [_COCO_VAL],
            ),
            "test": SplitSource(
                [_annotation(f"{_LAVIS}/datasets/coco_karpathy_test.json", "3ff34b0ef2db02d01c37399f6a2a6cd1")],
                [_COCO_VAL],
            ),
        },
    ),
    "vg_caption": (
        "vg",
        {
            "train": SplitSource(
                # LAVIS's lavis/configs/datasets/vg/defaults_caption.yaml
                [_annotation(f"{_LAVIS}/LAVIS/datasets/visual_genome/vg_caption.json")],
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
            # LAVIS's lavis/configs/datasets/coco/defaults_vqa.yaml
            "train": SplitSource(
                [_annotation(f"{_LAVIS}/datasets/vqa_train.json"), _annotation(f"{_LAVIS}/datasets/vqa_val.json")],
                [_COCO_TRAIN, _COCO_VAL],
            ),
            "val": SplitSource(
                [
                    _annotation(f"{_VQA}/v2_OpenEnded_mscoco_val2014_questions.json"),
                    _annotation(f"{_VQA}/v2_mscoco_val2014_annotations.json"),
                ],
                [_COCO_VAL],
            ),
            "test": SplitSource([_annotation(f"{_LAVIS}/datasets/vqa_test.json")], [_COCO_TEST2015]),
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
