"""``paddle.io`` for the modules built on it (the datasets and the DataLoader), with an install hint if it is missing.

Only these modules import paddle, and only when they are first used: ``import blip2_data``, the downloader, the
processors and the collator work without it.
"""

from __future__ import annotations

try:
    import paddle  # noqa: F401 - on its own, so that only a missing paddle (not a broken one) gets the hint
except ModuleNotFoundError as error:
    if error.name != "paddle":
        raise
    raise ModuleNotFoundError(
        "blip2-data needs PaddlePaddle, which is not installed: pip install 'blip2-data[cpu]' (or pip install "
        "paddlepaddle) for the CPU build; for a GPU, pip install paddlepaddle-gpu (pick the CUDA build on "
        "paddlepaddle.org.cn)",
        name="paddle",
    ) from None

from paddle.io import BatchSampler, DataLoader, Dataset, IterableDataset

__all__ = ["BatchSampler", "DataLoader", "Dataset", "IterableDataset"]
