"""BLIP-2 data: COCO / VG / VQAv2 / custom datasets, webdataset tar shards, image and text processors,
collators, data loading.

Each name loads its module on first use, so ``import blip2_data`` imports neither paddle nor numpy. Only the
datasets (``Blip2Dataset``, ``ConcatDataset``, ``concat_datasets``, ``load_dataset``, ``Blip2WebDataset``) and
``Blip2DataLoader`` need paddle; without it they raise a ModuleNotFoundError saying what to install. The
downloader, the processors, the collator and the errors work without paddle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy_names import lazy_module_getattr

__all__ = [
    "BadSampleError",
    "Blip2Collator",
    "Blip2DataLoader",
    "Blip2Dataset",
    "Blip2WebDataset",
    "CAPTION_EVAL_IMAGE_SIZE",
    "CAPTION_PROMPT",
    "CLIP_MEAN",
    "CLIP_STD",
    "ChecksumError",
    "ConcatDataset",
    "DATASET_SOURCES",
    "DatasetError",
    "DatasetNotAvailableError",
    "IGNORE_INDEX",
    "ImageProcessor",
    "ImageProcessorConfig",
    "IncompleteDownloadError",
    "PRETRAIN_IMAGE_SIZE",
    "RemoteFile",
    "TextProcessor",
    "VQA_EVAL_IMAGE_SIZE",
    "VQA_PROMPT",
    "WebDatasetSource",
    "apply_prompt",
    "blip2_home",
    "concat_datasets",
    "download_file",
    "expand_shards",
    "is_offline",
    "is_retryable",
    "load_dataset",
    "load_image",
    "pad_sequences",
    "pre_caption",
    "pre_question",
    "prepare_dataset",
    "write_shards",
]

# Public name → the module that defines it (imported on first use of one of its names).
_SOURCES = {
    "IGNORE_INDEX": ".collator",
    "Blip2Collator": ".collator",
    "pad_sequences": ".collator",
    "DATASET_SOURCES": ".dataset_sources",
    "RemoteFile": ".dataset_sources",
    "Blip2Dataset": ".datasets",
    "ConcatDataset": ".datasets",
    "concat_datasets": ".datasets",
    "IncompleteDownloadError": ".download",
    "blip2_home": ".download",
    "download_file": ".download",
    "is_offline": ".download",
    "is_retryable": ".download",
    "BadSampleError": ".errors",
    "ChecksumError": ".errors",
    "DatasetError": ".errors",
    "DatasetNotAvailableError": ".errors",
    "CAPTION_EVAL_IMAGE_SIZE": ".image",
    "CLIP_MEAN": ".image",
    "CLIP_STD": ".image",
    "PRETRAIN_IMAGE_SIZE": ".image",
    "VQA_EVAL_IMAGE_SIZE": ".image",
    "ImageProcessor": ".image",
    "ImageProcessorConfig": ".image",
    "load_image": ".image",
    "load_dataset": ".load",
    "Blip2DataLoader": ".loader",
    "prepare_dataset": ".prepare",
    "write_shards": ".make_shards",
    "expand_shards": ".shards",
    "WebDatasetSource": ".webdataset_source",
    "Blip2WebDataset": ".webdataset_dataset",
    "CAPTION_PROMPT": ".text",
    "VQA_PROMPT": ".text",
    "TextProcessor": ".text",
    "apply_prompt": ".text",
    "pre_caption": ".text",
    "pre_question": ".text",
}

if TYPE_CHECKING:  # for type checkers and editors, which do not run __getattr__
    from .collator import IGNORE_INDEX, Blip2Collator, pad_sequences
    from .dataset_sources import DATASET_SOURCES, RemoteFile
    from .datasets import Blip2Dataset, ConcatDataset, concat_datasets
    from .download import IncompleteDownloadError, blip2_home, download_file, is_offline, is_retryable
    from .errors import BadSampleError, ChecksumError, DatasetError, DatasetNotAvailableError
    from .image import (
        CAPTION_EVAL_IMAGE_SIZE,
        CLIP_MEAN,
        CLIP_STD,
        PRETRAIN_IMAGE_SIZE,
        VQA_EVAL_IMAGE_SIZE,
        ImageProcessor,
        ImageProcessorConfig,
        load_image,
    )
    from .load import load_dataset
    from .loader import Blip2DataLoader
    from .make_shards import write_shards
    from .prepare import prepare_dataset
    from .shards import expand_shards
    from .text import CAPTION_PROMPT, VQA_PROMPT, TextProcessor, apply_prompt, pre_caption, pre_question
    from .webdataset_dataset import Blip2WebDataset
    from .webdataset_source import WebDatasetSource

__getattr__ = lazy_module_getattr(__name__, _SOURCES)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
