"""``WebDatasetSource``: image-caption pre-training data in webdataset tar shards (img2dataset's layout), read as a
stream that splits across ranks and DataLoader workers, shuffles with a buffer, and resumes mid-epoch exactly.

How a slot (one worker of one rank) reads an epoch: its shards (:func:`blip2_data.shards.slot_shards`) are taken
in groups of ``shuffle_shards``; the shards of a group are read interleaved (one sample of each in turn) into a
buffer of ``shuffle_buffer`` items, from which a random one is yielded whenever it is full; at the end of the
group the buffer is emptied in random order. Every random choice comes from ``(seed, epoch, rank, worker,
group, n)``, so a slot's order is a function of these alone, and its position is ``(group, n)``: a resumed run
re-reads only the current group's shards, up to ``n``, without decoding images. (webdataset's own shuffle
keeps its buffer in memory only, which could not be resumed.)

Captions: ``captions="random"`` (default) yields each image once per epoch with one of its captions, chosen
by ``(seed, epoch, key)`` (BLIP's pre-training does ``random.choice`` over CapFilt's captions); ``"all"``
yields one item per caption.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import random
import sys
from collections.abc import Iterator, Sequence
from typing import Any, Callable

import numpy as np

from .errors import SKIP_BAD_SAMPLES_OPTION, SKIPPED_KEY, BadSampleError, DatasetError
from .image import load_image
from .shard_reader import Record, read_shard
from .shards import expand_shards, slot_shards

logger = logging.getLogger(__name__)

POSITION_KEY = "_position"  # [rank, worker, epoch, group, n] of the item: what mark_consumed takes
POSITION_FIELDS = ("rank", "worker", "epoch", "group", "n")
CAPTION_MODES = ("random", "all")
# Settings that decide each slot's order: a state is only valid for a source with the same ones.
ORDER_SETTINGS = ("seed", "rank", "world_size", "num_shards", "captions", "shuffle", "shuffle_buffer", "shuffle_shards")


def worker_info() -> tuple[int, int]:
    """(worker id, number of workers) of paddle's DataLoader, or (0, 1) outside one. paddle is only asked if it
    is already imported (a DataLoader worker has it), so that the source itself never imports it."""
    paddle = sys.modules.get("paddle")
    info = paddle.io.get_worker_info() if paddle is not None else None
    return (info.id, info.num_workers) if info is not None else (0, 1)


def image_id_of(key: str) -> int:
    """img2dataset's keys are digits (shard number + index): the id is that number; any other key gets a stable
    63-bit hash, so that captions of one image share an id (stage 1's ITC positives) in every process."""
    if key.isdigit():
        return int(key)
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") >> 1


def interleave(streams: Sequence[Iterator[Record]]) -> Iterator[Record]:
    """One record of each stream in turn, until all are exhausted."""
    active = list(streams)
    while active:
        for stream in list(active):
            record = next(stream, None)
            if record is None:
                active.remove(stream)
            else:
                yield record


class WebDatasetSource:
    """Caption samples from tar shards, as dicts ``{"image": PIL RGB image (or the image_processor's output),
    "text_input", "image_id", "key", "shard", "_position"}``; with ``skip_bad_samples`` a bad sample is
    ``{"_skipped": message, "_position"}``, which :class:`~blip2_data.collator.Blip2Collator` drops and counts.

    ``rank`` / ``world_size`` default to paddle.distributed.launch's ``PADDLE_TRAINER_ID`` /
    ``PADDLE_TRAINERS_NUM``; the DataLoader worker is found when iterating. ``set_epoch(e)`` before each epoch.

    Resuming: ``state_dict()`` is this rank's position (per worker: group, items consumed in it, its shards);
    ``load_state_dict(state)`` on a new source makes its next pass of that epoch continue there. Iterated
    directly, the source counts what it yields as consumed; behind a DataLoader (which reads ahead) build it
    with ``track_yielded=False`` and call ``mark_consumed(batch["_position"])`` for each batch the model took.
    """

    def __init__(
        self,
        shards: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        captions: str = "random",
        shuffle: bool = True,
        shuffle_buffer: int = 1000,
        shuffle_shards: int = 4,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        image_processor: Callable[[Any], Any] | None = None,
        text_processor: Callable[[str], str] | None = None,
        skip_bad_samples: bool = False,
        track_yielded: bool = True,
        num_workers: int | None = None,
        name: str = "webdataset",
    ) -> None:
        if captions not in CAPTION_MODES:
            raise DatasetError(f"captions must be one of {CAPTION_MODES}, got {captions!r}")
        if shuffle_buffer < 1 or shuffle_shards < 1:
            raise DatasetError(
                f"shuffle_buffer and shuffle_shards must be >= 1, got {shuffle_buffer}, {shuffle_shards}"
            )
        self.shards = expand_shards(shards)
        self.name, self.captions, self.seed = name, captions, seed
        # Without shuffling the order is the shards' own: one shard at a time, items as read.
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer if shuffle else 1
        self.shuffle_shards = shuffle_shards if shuffle else 1
        self.rank = int(os.environ.get("PADDLE_TRAINER_ID", 0)) if rank is None else rank
        self.world_size = int(os.environ.get("PADDLE_TRAINERS_NUM", 1)) if world_size is None else world_size
        self.image_processor, self.text_processor = image_processor, text_processor
        self.skip_bad_samples, self.track_yielded = skip_bad_samples, track_yielded
        self.epoch = 0
        self.num_workers = num_workers  # the DataLoader's; else learnt when iterated here, or from a loaded state
        self.consumed: dict[int, tuple[int, int]] = {}  # worker -> (group, items of it consumed), this epoch
        self._resume: dict[int, tuple[int, int]] = {}  # from load_state_dict, for the next pass of self.epoch
        self.skipped: list[str] = []  # bad samples skipped in this process

    @property
    def num_shards(self) -> int:
        return len(self.shards)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.consumed, self._resume = epoch, {}, {}

    # --- reading ---------------------------------------------------------------------------------------------

    def slot_groups(self, worker: int, num_workers: int) -> list[list[str]]:
        """The shards ``worker`` reads this epoch, in groups of ``shuffle_shards``."""
        order = slot_shards(
            self.num_shards,
            rank=self.rank,
            world_size=self.world_size,
            worker=worker,
            num_workers=num_workers,
            seed=self.seed,
            epoch=self.epoch,
            shuffle=self.shuffle,
        )
        paths = [self.shards[i] for i in order]
        return [paths[i : i + self.shuffle_shards] for i in range(0, len(paths), self.shuffle_shards)]

    def _entries(self, record: Record) -> list[tuple[Record, str | None]]:
        """What a record puts into the buffer: (record, caption) per item it yields; (record, None) if bad."""
        if record.problem:
            message = f"{self.name}: {record.where()}: {record.problem}"
            if not self.skip_bad_samples:
                raise BadSampleError(f"{message} (pass {SKIP_BAD_SAMPLES_OPTION} to skip such samples)")
            return [(record, None)]
        if self.captions == "all":
            return [(record, caption) for caption in record.captions]
        choice = random.Random(f"caption:{self.seed}:{self.epoch}:{record.key}").randrange(len(record.captions))
        return [(record, record.captions[choice])]

    def _group_items(self, group: list[str], stream_seed: str) -> Iterator[tuple[Record, str | None]]:
        """The group's buffer entries in this slot's order (the n-th draw is seeded by ``stream_seed`` and n)."""
        buffer: list[tuple[Record, str | None]] = []
        drawn = 0

        def draw() -> tuple[Record, str | None]:
            nonlocal drawn
            i = random.Random(f"{stream_seed}:{drawn}").randrange(len(buffer)) if self.shuffle else 0
            drawn += 1
            return buffer.pop(i)

        for record in interleave([read_shard(shard) for shard in group]):
            buffer += self._entries(record)
            while len(buffer) >= self.shuffle_buffer:
                yield draw()
        while buffer:
            yield draw()

    def _item(self, record: Record, caption: str | None) -> dict[str, Any]:
        if caption is None:
            return self._skip(f"{self.name}: {record.where()}: {record.problem}")
        try:
            image = load_image(io.BytesIO(record.image))
            if self.image_processor is not None:
                image = self.image_processor(image)
        except Exception as error:  # any decode/transform failure: name the shard and key, keep the cause
            message = f"{self.name}: {record.where()}: cannot decode image: {type(error).__name__}: {error}"
            if not self.skip_bad_samples:
                raise BadSampleError(f"{message} (pass {SKIP_BAD_SAMPLES_OPTION} to skip such samples)") from error
            return self._skip(message)
        text = self.text_processor(caption) if self.text_processor is not None else caption
        return {
            "image": image,
            "text_input": text,
            "image_id": image_id_of(record.key),
            "key": record.key,
            "shard": record.shard,
        }

    def _skip(self, message: str) -> dict[str, Any]:
        self.skipped.append(message)
        logger.warning("skipped a bad sample: %s", message)
        return {SKIPPED_KEY: message}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.iter_slot(*worker_info())

    def iter_slot(self, worker: int, num_workers: int) -> Iterator[dict[str, Any]]:
        """The items worker ``worker`` of ``num_workers`` reads this epoch (what ``iter()`` gives in that worker)."""
        if self.num_workers is not None and self.num_workers != num_workers:
            raise DatasetError(
                f"{self.name}: built or resumed for {self.num_workers} DataLoader workers but read by "
                f"{num_workers}: each worker's shards and position depend on the count"
            )
        self.num_workers = num_workers
        # One pass continues from a loaded state; a later pass of the same epoch starts afresh.
        start_group, start = self._resume.pop(worker, (0, 0))
        if self.track_yielded:
            self.consumed[worker] = (start_group, start)
        groups = self.slot_groups(worker, num_workers)
        if not groups:
            logger.warning(
                "%s: rank %d worker %d has no shard (%d shards for %d slots)",
                self.name,
                self.rank,
                worker,
                self.num_shards,
                self.world_size * num_workers,
            )
        for g in range(start_group, len(groups)):
            stream_seed = f"buffer:{self.seed}:{self.epoch}:{self.rank}:{worker}:{g}"
            for n, (record, caption) in enumerate(self._group_items(groups[g], stream_seed)):
                if g == start_group and n < start:
                    continue  # consumed before the state was saved: re-read, not decoded
                item = self._item(record, caption)
                item[POSITION_KEY] = [self.rank, worker, self.epoch, g, n]
                if self.track_yielded:
                    self.consumed[worker] = (g, n + 1)
                yield item

    # --- resuming --------------------------------------------------------------------------------------------

    def mark_consumed(self, positions: Any) -> None:
        """Record items as consumed: one item's ``_position``, or a batch's ``[batch, 5]`` of them (a list, a numpy
        array or a tensor: paddle's DataLoader passes only arrays). A later epoch's item starts that epoch."""
        positions = positions.numpy() if hasattr(positions, "numpy") else positions
        positions = np.asarray(positions, dtype=np.int64).reshape(-1, len(POSITION_FIELDS)).tolist()
        for rank, worker, epoch, group, n in positions:
            if rank != self.rank:
                raise DatasetError(f"{self.name}: an item of rank {rank} marked consumed on rank {self.rank}")
            if epoch > self.epoch:
                self.set_epoch(epoch)
            if epoch == self.epoch:
                self.consumed[worker] = max(self.consumed.get(worker, (0, 0)), (group, n + 1))

    def state_dict(self) -> dict[str, Any]:
        """This rank's position in the epoch, JSON-serialisable: per worker the group of shards being read, the
        items of it consumed (``index``), and those shards (for people; resuming needs group and index)."""
        if self.num_workers is None:
            raise DatasetError(f"{self.name}: pass num_workers= (the DataLoader's) to the source to save its state")
        workers = {}
        for worker, (group, index) in sorted(self.consumed.items()):
            groups = self.slot_groups(worker, self.num_workers)
            shards = groups[group] if group < len(groups) else []
            workers[str(worker)] = {"group": group, "index": index, "shards": shards}
        settings = {key: getattr(self, key) for key in ORDER_SETTINGS}
        return {"epoch": self.epoch, "num_workers": self.num_workers, **settings, "workers": workers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (this rank's ``state_dict()``): the next pass of its epoch skips what was consumed.
        The settings that decide the order (shards, seed, ranks, buffer, caption mode) must be the same."""
        changed = [
            f"{key} {state.get(key)!r} -> {getattr(self, key)!r}"
            for key in ORDER_SETTINGS
            if state.get(key) != getattr(self, key)
        ]
        if changed:
            raise DatasetError(
                f"{self.name}: cannot resume, the state was saved with other settings: {'; '.join(changed)}"
            )
        self.epoch, self.num_workers = state["epoch"], state["num_workers"]
        self.consumed = {int(w): (p["group"], p["index"]) for w, p in state["workers"].items()}
        self._resume = dict(self.consumed)

    def __repr__(self) -> str:
        return f"WebDatasetSource({self.name!r}, {self.num_shards} shards, rank {self.rank}/{self.world_size})"
