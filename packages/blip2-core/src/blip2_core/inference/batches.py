"""Images through the model a batch at a time, each image's row in the order given; bad images become error rows."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any, Callable, TypeVar

from .image_sources import read_image
from .predictor import GenerationSettings, Predictor

Item = TypeVar("Item")


def batched(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"the batch size must be >= 1, got {size}")
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def predict_rows(
    predictor: Predictor,
    sources: Sequence[str],
    *,
    batch_size: int,
    settings: GenerationSettings,
    prompt: str = "",
    question: str | None = None,
    read: Callable[[str], Any] = read_image,
) -> Iterator[list[dict[str, Any]]]:
    """For each batch of ``sources``, its rows: ``{"image", "caption"}`` or ``{"image", "question", "answer"}``,
    or ``{"image", "error"}`` naming the file and the reason it could not be read."""
    for batch in batched(sources, batch_size):
        rows: list[dict[str, Any]] = []
        pixels = []
        for source in batch:
            try:
                pixels.append(predictor.pixels(read(source)))
                rows.append({"image": source})
            except OSError as error:  # one bad image must not cost the others their captions
                rows.append({"image": source, "error": str(error)})
        good = [row for row in rows if "error" not in row]
        if good and question is not None:
            for row, answer in zip(good, predictor.answer(pixels, [question] * len(good), settings)):
                row.update(question=question, answer=answer)
        elif good:
            for row, caption in zip(good, predictor.caption(pixels, prompt, settings)):
                row["caption"] = caption
        yield rows
