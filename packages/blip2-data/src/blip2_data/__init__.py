"""BLIP-2 data: COCO / VG / VQAv2 / custom datasets, image and text processors, collators, data loading."""

try:
    import paddle  # noqa: F401 - the loaders are paddle's; checked first so that a missing install says what to do
except ModuleNotFoundError as error:
    if error.name != "paddle":
        raise
    raise ModuleNotFoundError(
        "blip2-data needs PaddlePaddle, which is not installed: pip install 'blip2-data[cpu]' (or pip install "
        "paddlepaddle) for the CPU build; for a GPU, pip install paddlepaddle-gpu (pick the CUDA build on "
        "paddlepaddle.org.cn)",
        name="paddle",
    ) from None

from .collator import IGNORE_INDEX, Blip2Collator, pad_sequences
from .datasets import Blip2Dataset, ConcatDataset, concat_datasets
from .download import (
    DATASET_SOURCES,
    IncompleteDownloadError,
    RemoteFile,
    blip2_home,
    download_file,
    is_offline,
    is_retryable,
    prepare_dataset,
)
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
from .text import CAPTION_PROMPT, VQA_PROMPT, TextProcessor, apply_prompt, pre_caption, pre_question

__all__ = [
    "BadSampleError",
    "Blip2Collator",
    "Blip2DataLoader",
    "Blip2Dataset",
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
    "apply_prompt",
    "blip2_home",
    "concat_datasets",
    "download_file",
    "is_offline",
    "is_retryable",
    "load_dataset",
    "load_image",
    "pad_sequences",
    "pre_caption",
    "pre_question",
    "prepare_dataset",
]
