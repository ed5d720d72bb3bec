"""A paddle DataLoader set up for image decoding in worker processes, with errors that name the sample."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np

from .errors import BadSampleError
from .paddle_io import BatchSampler, DataLoader, Dataset

logger = logging.getLogger(__name__)

_ERROR_KEY = "_error"


class _ReportingDataset(Dataset):
    """Turns an exception in ``__getitem__`` into an item carrying the message, so it reaches the main process.

    Raised inside a worker, paddle's reader thread only prints the exception and the main process sees a generic
    "Blocking queue is killed" SystemError.
    """

    def __init__(self, dataset: Dataset) -> None:
        super().__init__()
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except Exception as e:
            where = self.dataset.describe(index) if hasattr(self.dataset, "describe") else f"sample {index}"
            message = str(e) if isinstance(e, BadSampleError) else f"{where}: {type(e).__name__}: {e}"
            return {_ERROR_KEY: message, "traceback": traceback.format_exc()}


class _ReportingCollate:
    """Runs the collator unless an item failed; wraps the batch with an array because paddle's multi-process
    loader silently drops batches that hold no array (e.g. one made only of skipped samples)."""

    def __init__(self, collate_fn: Callable[[list], Any]) -> None:
        self.collate_fn = collate_fn

    def __call__(self, items: list) -> dict:
        failed = [item for item in items if isinstance(item, dict) and _ERROR_KEY in item]
        if failed:
            batch = {_ERROR_KEY: failed[0][_ERROR_KEY], "traceback": failed[0]["traceback"]}
        else:
            try:
                batch = self.collate_fn(items)
            except Exception as e:
                batch = {
                    _ERROR_KEY: f"collating a batch failed: {type(e).__name__}: {e}",
                    "traceback": traceback.format_exc(),
                }
        return {"batch": batch, "_keep": np.zeros(1, np.int8)}


class Blip2DataLoader:
    """Iterates batches from ``paddle.io.DataLoader`` with decoding in ``num_workers`` processes.

    JPEG decoding and resizing dominate the cost; worker processes run them in parallel with the training step
    (each worker keeps ``prefetch_factor`` batches ready). A sample that fails raises :class:`BadSampleError` in
    the main process naming the sample and its annotation row (the worker's traceback is attached as a note).
    Batches whose collator dropped skipped samples carry ``num_skipped``; after each pass the total is logged and
    kept in ``last_epoch_skipped``.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int = 1,
        collate_fn: Callable[[list], Any],
        num_workers: int = 2,
        prefetch_factor: int = 2,
        shuffle: bool = False,
        drop_last: bool = False,
        batch_sampler: BatchSampler | None = None,
        persistent_workers: bool = False,
        use_shared_memory: bool = True,
    ) -> None:
        self.dataset = dataset
        sampling = (
            {"batch_sampler": batch_sampler}
            if batch_sampler is not None
            else {"batch_size": batch_size, "shuffle": shuffle, "drop_last": drop_last}
        )
        self.loader = DataLoader(
            _ReportingDataset(dataset),
            collate_fn=_ReportingCollate(collate_fn),
            num_workers=num_workers,
            prefetch_factor=prefetch_factor,
            persistent_workers=persistent_workers and num_workers > 0,
            use_shared_memory=use_shared_memory,
            return_list=True,
            **sampling,
        )
        self.last_epoch_skipped: list[str] = []

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        skipped: list[str] = []
        self.last_epoch_skipped = skipped
        for wrapped in self.loader:
            batch = wrapped["batch"]
            if _ERROR_KEY in batch:
                error = BadSampleError(batch[_ERROR_KEY])
                if hasattr(error, "add_note"):  # Python >= 3.11
                    error.add_note("in a DataLoader worker:\n" + batch["traceback"])
                raise error
            if isinstance(batch, dict) and batch.get("skipped"):
                skipped.extend(batch["skipped"])
            yield batch
        if skipped:
            logger.warning("skipped %d bad samples in this pass; first: %s", len(skipped), skipped[0])
