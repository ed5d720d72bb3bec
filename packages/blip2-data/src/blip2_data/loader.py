"""A paddle DataLoader set up for image decoding in worker processes, counting skipped samples."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Callable

from paddle.io import BatchSampler, DataLoader, Dataset

logger = logging.getLogger(__name__)


class Blip2DataLoader:
    """Iterates batches from ``paddle.io.DataLoader`` with decoding in ``num_workers`` processes.

    JPEG decoding and resizing dominate the cost; worker processes run them in parallel with the training step
    (each worker keeps ``prefetch_factor`` batches ready). Batches whose collator dropped bad samples carry
    ``num_skipped``; after each pass the total is logged and kept in ``last_epoch_skipped``.
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
            dataset,
            collate_fn=collate_fn,
            num_workers=num_workers,
            prefetch_factor=prefetch_factor,
            persistent_workers=persistent_workers and num_workers > 0,
            use_shared_memory=use_shared_memory,
            # Tensors are made in the main process from the collator's numpy arrays, not in the workers.
            return_list=True,
            **sampling,
        )
        self.last_epoch_skipped: list[str] = []

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        skipped: list[str] = []
        self.last_epoch_skipped = skipped
        for batch in self.loader:
            if isinstance(batch, dict) and batch.get("skipped"):
                skipped.extend(batch["skipped"])
            yield batch
        if skipped:
            logger.warning("skipped %d bad samples in this pass; first: %s", len(skipped), skipped[0])
