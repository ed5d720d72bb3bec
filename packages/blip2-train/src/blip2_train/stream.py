"""Training from webdataset tar shards (``--dataset webdataset --data_files 'shards/{00000..00099}.tar'``): a
stream without a length, split over ranks and DataLoader workers, resumable mid-epoch.

- ``StreamingSamples`` (in each DataLoader worker) reads its slot of the shards (blip2-data's
  ``WebDatasetSource``) and prepares items as the map-style path does: the training image transform, the
  caption cleaned, stage 2's prefix-LM split; each item keeps its ``_position`` (rank, worker, epoch, group, n).
- ``StreamLoader`` (in the trainer's process) goes over epoch after epoch until ``--max_steps``. After each
  optimizer step the trainer marks the trained batches' positions consumed; a checkpoint keeps each rank's
  position as ``data_state_rank{r}.json``, and a resumed run starts from the sample after the last one trained.

The epoch rule: every rank asks, before each batch, whether all ranks still have one (one small all-reduce);
the epoch ends for all when the first rank has none. Each worker reads whole shards and batches only its own
items (the last incomplete batch of a worker is dropped: ranks gather tensors of one shape), so with a shard
count that is a multiple of ranks x workers and shards of one size, an epoch sees every sample but fewer than
one batch per worker. Otherwise the ranks whose slots got fewer items end the epoch for everyone and the others'
remaining items of that epoch are not trained (the shard order is reshuffled every epoch, so not always the
same ones).
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import paddle.distributed as dist
from paddle.io import DataLoader, IterableDataset
from paddlenlp.trainer import TrainerCallback

from blip2_data import BadSampleError, DatasetError, ImageProcessor, ImageProcessorConfig, load_dataset, pre_caption
from blip2_data.errors import SKIPPED_KEY
from blip2_data.webdataset_source import POSITION_KEY, WebDatasetSource, worker_info

from .data import (
    ERROR_KEY,
    KEYS_KEY,
    LOGGED_SKIPS_KEY,
    REPLACED_KEY,
    decode_keys,
    raise_deferred_error,
    split_caption,
)

logger = logging.getLogger(__name__)

STREAM_DATASETS = ("webdataset",)
DATA_STATE = "data_state_rank{rank}.json"
CONSUMED_LOG = "consumed_samples_rank{rank}.jsonl"
WORKER, EPOCH = 1, 2  # columns of a _position row (rank, worker, epoch, group, n)


def is_stream(datasets: list[str]) -> bool:
    """Whether ``--dataset`` names the shard stream alone; mixing it with others needs ``--sampling_weights``."""
    streams = [name for name in datasets if name in STREAM_DATASETS]
    if streams and len(streams) != len(datasets):
        raise DatasetError(
            f"--dataset {' '.join(datasets)}: webdataset shards mix with map-style datasets only by sampling "
            "weights: pass --sampling_weights (one per --dataset) and one --data_files entry per --dataset"
        )
    if len(streams) > 1:
        raise DatasetError(
            "--dataset webdataset once: list all shard patterns in --data_files (or weigh several sets of shards "
            "with --sampling_weights, one --data_files entry each)"
        )
    return bool(streams)


def require_max_steps(args: Any, what: str = "--dataset webdataset is a stream without a length") -> None:
    if args.max_steps <= 0:
        raise DatasetError(
            f"{what}: pass --max_steps (epochs follow one another until then; --num_train_epochs does not apply)"
        )


def load_stream(data_files: list[str] | None, data_args: Any, args: Any) -> WebDatasetSource:
    """The rank's shard source: every --data_files pattern read as one set of shards."""
    if not data_files:
        raise DatasetError("--dataset webdataset needs --data_files 'shards/{00000..00099}.tar' (paths or patterns)")
    require_max_steps(args)
    [source] = load_dataset(
        "webdataset",
        list(data_files),
        splits=["train"],
        skip_bad_samples=data_args.skip_bad_samples,
        captions=data_args.webdataset_captions,
        shuffle_buffer=data_args.shuffle_buffer,
        shuffle_shards=data_args.shuffle_shards,
        seed=args.seed,
        rank=max(args.dataset_rank, 0),
        world_size=max(args.dataset_world_size, 1),
        num_workers=max(args.dataloader_num_workers, 1),  # 0 workers: the main process reads as worker 0 of 1
        track_yielded=False,  # the loader reads ahead: the trainer marks what was trained
    )
    return source


class StreamingSamples(IterableDataset):
    """The source's items prepared for the model, in each DataLoader worker.

    A bad sample that the source skipped (``--skip_bad_samples``; it logs the shard and key) is counted on the
    next good item (those after the worker's last good item on that one), so every batch keeps its size; an error (without the flag) is returned as a batch's worth
    of error items, which the trainer's process raises (an exception in a worker would only be printed there)."""

    def __init__(
        self,
        source: WebDatasetSource,
        image_config: ImageProcessorConfig,
        batch_size: int,
        seed: int,
        split_for_prefix_lm: bool = False,
        max_words: int = 50,
        augment: bool = True,
    ) -> None:
        super().__init__()
        self.source, self.image_config, self.batch_size, self.seed = source, image_config, batch_size, seed
        self.split_for_prefix_lm, self.max_words, self.augment = split_for_prefix_lm, max_words, augment
        # paddle's DataLoader takes its workers' batches in turn from worker 0: a resumed epoch maps worker 0 to
        # the slot whose turn was next, so that the rank's batch order is the uninterrupted run's
        self.first_worker = 0

    def _prepare(self, item: dict[str, Any]) -> dict[str, Any]:
        # (seed, position): this item's crop and flip in any process; coco_caption's transform (RandAugment is
        # only Visual Genome's, see RAND_AUGMENTED_DATASETS)
        rng = random.Random(f"{self.seed}:{item[POSITION_KEY]}")
        image = ImageProcessor(self.image_config, train=self.augment, rng=rng)(item["image"])
        caption = pre_caption(item["text_input"], self.max_words)
        where = f"{self.source.name}: shard {item['shard']} key {item['key']!r}"
        if not caption:
            raise BadSampleError(f"{where}: caption {item['text_input']!r} is empty once cleaned")
        prepared = {"image": image, "text_input": caption, "image_id": item["image_id"], "key": item["key"]}
        if self.split_for_prefix_lm:
            prepared["text_input"], prepared["text_output"] = split_caption(caption, rng)
        return {**prepared, POSITION_KEY: item[POSITION_KEY]}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        physical, workers = worker_info()
        stream = self.source.iter_slot((physical + self.first_worker) % workers, workers)
        notes: list[str] = []
        logged = 0  # skips the source has logged (and named) itself
        held = None  # the last good item, yielded once the next is found: bad samples after it are counted on it
        try:
            for item in stream:
                if SKIPPED_KEY in item:
                    logged += 1
                    continue
                try:
                    prepared = self._prepare(item)
                except BadSampleError as error:
                    if not self.source.skip_bad_samples:
                        raise
                    notes.append(str(error))
                    continue
                if held is not None:
                    yield held
                held = {**prepared, REPLACED_KEY: notes, LOGGED_SKIPS_KEY: logged}
                notes, logged = [], 0
            if held is not None:
                held[REPLACED_KEY] = held[REPLACED_KEY] + notes
                held[LOGGED_SKIPS_KEY] += logged
                yield held
        except BadSampleError as error:
            if held is not None:
                yield held
            message = str(error)
            if "--skip_bad_samples" not in message and "skip_bad_samples=True" not in message:
                message += " (pass --skip_bad_samples to skip such samples)"
            for _ in range(self.batch_size):  # a full batch: the loader drops an incomplete last one
                yield {ERROR_KEY: message}


class StreamLoader:
    """Batches of ``samples`` epoch after epoch, the same number on every rank; what the trainer iterates.

    ``pending`` holds the positions (and keys) of batches handed out since the last optimizer step;
    ``commit`` marks them consumed once that step is made."""

    def __init__(self, samples: StreamingSamples, collate_fn: Any, num_workers: int, world_size: int) -> None:
        self.samples, self.collate_fn = samples, collate_fn
        self.num_workers, self.world_size = num_workers, world_size
        self.pending: list[tuple[np.ndarray, list[str]]] = []
        self.next_worker = 0  # the slot whose batch comes next in the current epoch
        self.resumed_epoch: int | None = None
        self._batches: Any = None  # the current epoch's loader iterator
        self._threads: list[Any] = []  # reader threads of loaders shut down, to join before the process ends

    @property
    def source(self) -> WebDatasetSource:
        return self.samples.source

    def _all_have_batch(self, batch: dict[str, Any] | None) -> bool:
        """Whether every rank has a batch; a rank that failed on a bad sample stops every rank."""
        failed = batch is not None and ERROR_KEY in batch
        if failed and self.world_size == 1:
            raise_deferred_error(batch)
        flags = paddle.to_tensor([0 if batch is None else 1, -1 if failed else 0], dtype="int64")
        if self.world_size > 1:
            dist.all_reduce(flags, op=dist.ReduceOp.MIN)
        have, failed_anywhere = flags.tolist()
        if failed:
            raise_deferred_error(batch)
        if failed_anywhere:
            raise BadSampleError("another rank stopped on a bad sample: its log names it")
        return bool(have)

    def _epoch(self) -> Iterator[dict[str, Any]]:
        """One epoch's batches, until a rank runs out."""
        loader = DataLoader(
            self.samples,
            batch_size=self.samples.batch_size,
            drop_last=True,
            collate_fn=self.collate_fn,
            num_workers=self.num_workers,
            return_list=True,
        )
        self._batches = batches = iter(loader)
        try:
            while True:
                batch = next(batches, None)
                if not self._all_have_batch(batch):
                    return
                positions = batch.pop(POSITION_KEY).numpy()
                keys = decode_keys(batch.pop(KEYS_KEY)) if KEYS_KEY in batch else []
                self.pending.append((positions, keys))
                yield batch
        finally:
            self.close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            epoch = self.source.epoch
            resumed = epoch == self.resumed_epoch
            self.samples.first_worker = self.next_worker if resumed else 0
            steps = 0
            for batch in self._epoch():
                steps += 1
                yield batch
            logger.info("data epoch %d ended on every rank (%d batches here)", epoch, steps)
            if not steps and not resumed:
                raise DatasetError(
                    f"{self.source.name}: an epoch gave no full batch of {self.samples.batch_size} on some rank "
                    f"({self.source.num_shards} shards for {self.world_size} ranks x {max(self.num_workers, 1)} "
                    "workers): use more shards, fewer workers or a smaller batch"
                )
            self.source.set_epoch(epoch + 1)
            self.next_worker = 0

    def close(self, join: bool = False) -> None:
        """End the current loader's worker processes now (an epoch left early because another rank ran out, or
        the training's end) rather than at garbage collection; ``join``: also wait for the loaders' reader
        threads, which poll their queue every 5 s: one still running when the interpreter exits can abort it
        (paddle's dataloader_iter.py notes "terminate called without an active exception")."""
        batches, self._batches = self._batches, None
        shut_down(batches, self._threads, join)

    def commit(self) -> list[list[str]]:
        """Mark the batches trained by the optimizer step just made as consumed; returns each one's keys."""
        keys: list[list[str]] = []
        for positions, batch_keys in self.pending:
            self.source.mark_consumed(positions)
            if len(positions) and positions[-1][EPOCH] == self.source.epoch:
                self.next_worker = (int(positions[-1][WORKER]) + 1) % max(self.num_workers, 1)
            keys.append(batch_keys)
        self.pending = []
        return keys

    def log_fields(self) -> dict[str, Any]:
        """What a --log_consumed_samples line says besides the step and keys."""
        return {"epoch": self.source.epoch}

    def describe_position(self) -> str:
        workers = self.source.state_dict()["workers"]
        where = ", ".join(f"worker {w}: group {p['group']} item {p['index']}" for w, p in workers.items())
        return f"epoch {self.source.epoch}: {where}"

    def state_dict(self) -> dict[str, Any]:
        return {"source": self.source.state_dict(), "next_worker": self.next_worker}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state["source"].get("num_workers")
        if saved != max(self.num_workers, 1):  # refused here, not later in a worker where it would only be printed
            raise DatasetError(
                f"the checkpoint's data position is for --dataloader_num_workers {saved}, this run has "
                f"{self.num_workers}: each worker's shards and position depend on the count; resume with {saved}"
            )
        self.source.load_state_dict(state["source"])
        self.next_worker, self.resumed_epoch = int(state["next_worker"]), self.source.epoch


def shut_down(batches: Any, threads: list[Any], join: bool) -> None:
    """End a paddle loader iterator's worker processes now; keep its reader thread in ``threads`` and, with
    ``join``, wait for all of them (see ``StreamLoader.close``)."""
    shutdown = getattr(batches, "_try_shutdown_all", None)  # paddle's loader iterators (private API)
    if shutdown is not None:
        shutdown()
    thread = getattr(batches, "_thread", None)
    if thread is not None:
        threads.append(thread)
    if join:
        for thread in threads:
            thread.join(timeout=30)
        threads.clear()


def save_data_state(stream: Any, checkpoint: str | os.PathLike, rank: int) -> None:
    """This rank's position, beside the checkpoint's RNG state."""
    os.makedirs(checkpoint, exist_ok=True)
    path = Path(checkpoint) / DATA_STATE.format(rank=rank)
    path.write_text(json.dumps(stream.state_dict(), indent=1) + "\n")


class StreamCallback(TrainerCallback):
    """Resume the stream where the checkpoint left it; after each optimizer step, mark what was trained."""

    def __init__(self, trainer: Any, stream: Any, log_keys: bool) -> None:
        self.trainer, self.stream, self.log_keys = trainer, stream, log_keys

    def on_train_begin(self, args, state, control, **kwargs):
        checkpoint = self.trainer.resumed_from
        if not checkpoint:
            return
        path = Path(checkpoint) / DATA_STATE.format(rank=max(args.dataset_rank, 0))
        if not path.is_file():
            raise DatasetError(
                f"{checkpoint} has no {path.name}: it was not saved by a --dataset webdataset run of "
                f"{max(args.dataset_world_size, 1)} processes, so its data position is unknown"
            )
        self.stream.load_state_dict(json.loads(path.read_text()))
        self.trainer._load_rng_state(checkpoint)  # PaddleNLP's skip-by-iterating would have; it is off here
        logger.info("resumed the data at %s", self.stream.describe_position())

    def on_step_end(self, args, state, control, **kwargs):
        fields = self.stream.log_fields()  # before the commit: the step's sources, the epoch it was trained in
        keys = [key for batch in self.stream.commit() for key in batch]
        if self.log_keys:
            path = Path(args.output_dir) / CONSUMED_LOG.format(rank=max(args.dataset_rank, 0))
            with open(path, "a") as f:
                f.write(json.dumps({"step": state.global_step, **fields, "keys": keys}) + "\n")
