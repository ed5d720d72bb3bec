"""Batches of (pixels, metadata) for the items this rank still has to do, images decoded in workers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np


def stack_batch(items: list[dict]) -> dict[str, Any]:
    batch = {key: [item[key] for item in items] for key in items[0] if key != "image"}
    batch["pixel_values"] = np.stack([item["image"] for item in items])
    return batch


def image_batches(
    dataset: Any, indices: Sequence[int], image_processor: Any, batch_size: int, num_workers: int
) -> Iterator[dict[str, Any]]:
    """``dataset.samples[indices]`` with their images processed, ``batch_size`` at a time, in order.

    Errors name the sample, its annotation row and the image (blip2-data's BadSampleError).
    """
    from blip2_data import Blip2DataLoader, Blip2Dataset

    if not indices:
        return
    subset = Blip2Dataset(
        dataset.name,
        dataset.split,
        [dataset.samples[i] for i in indices],
        [dataset.origins[i] for i in indices],
        image_processor=image_processor,
    )
    yield from Blip2DataLoader(subset, batch_size=batch_size, collate_fn=stack_batch, num_workers=num_workers)
