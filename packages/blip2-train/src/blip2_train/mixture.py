"""Datasets mixed by sampling weights (``--dataset webdataset coco_caption --sampling_weights 0.8 0.2``): each batch
comes whole from one dataset, drawn with the weights, as LAVIS's ``MultiIterLoader`` draws among its loaders by
``train_dataset_ratios``. A dataset that runs out starts its next epoch on its own; the run goes on until
``--max_steps``.

- Each part is read by its own loader: a ``StreamLoader`` for tar shards (:mod:`blip2_train.stream`), a
  ``MapStream`` for a map-style dataset (its ``GlobalBatchSampler`` order, epoch after epoch).
- The n-th batch's dataset is drawn from ``(seed, n)`` alone, so every rank takes the same dataset at the same
  step (stage 1 gathers one dataset's features across ranks) and a resumed run draws what the straight run drew.
- A checkpoint's ``data_state_rank{r}.json`` holds the batches drawn and each part's own position; resuming
  continues each part at the batch after its last one trained.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from paddle.io import DataLoader, IterableDataset

from blip2_data import DatasetError

from .data import GlobalBatchSampler, TrainingSamples, parse_data_files
from .stream import STREAM_DATASETS, StreamingSamples, StreamLoader, shut_down

DOWNLOAD_ENTRY = "-"  # a --data_files entry that leaves its dataset to the download


@dataclass(frozen=True)
class PartSpec:
    """One dataset of a mixture as the command line gives it (``data_files``: its one --data_files entry, or None
    to download it); ``label`` names it in logs and states."""

    label: str
    dataset: str
    data_files: list | None
    weight: float

    @property
    def is_stream(self) -> bool:
        return self.dataset in STREAM_DATASETS


def plan_mixture(datasets: Sequence[str], data_files: Sequence[str] | None, weights: Sequence[float]) -> list[PartSpec]:
    """``--dataset`` / ``--data_files`` / ``--sampling_weights`` -> the mixture's parts, checked."""
    if len(weights) != len(datasets):
        raise DatasetError(
            f"--sampling_weights has {len(weights)} values for {len(datasets)} --dataset names: give one per dataset"
        )
    if any(not w > 0 for w in weights):  # also refuses nan
        raise DatasetError(f"--sampling_weights must all be > 0, got {list(weights)}")
    if data_files and len(data_files) != len(datasets):
        raise DatasetError(
            f"a mixture takes one --data_files entry per --dataset ({len(datasets)}), got {len(data_files)}: "
            f"shard patterns for webdataset, IMAGE_ROOT,ANNOTATION_JSON for the others, '{DOWNLOAD_ENTRY}' to download"
        )
    entries = list(data_files) if data_files else [DOWNLOAD_ENTRY] * len(datasets)
    repeated = {name for name in datasets if list(datasets).count(name) > 1}
    parts = []
    for i, (name, entry, weight) in enumerate(zip(datasets, entries, weights)):
        label = f"{name}[{i}]" if name in repeated else name
        if entry == DOWNLOAD_ENTRY:
            if name in STREAM_DATASETS:
                raise DatasetError(
                    f"--dataset {label}: tar shards are not downloaded; give their pattern in --data_files"
                )
            files = None
        else:
            if name not in STREAM_DATASETS:
                parse_data_files([name], [entry])  # checked now, read with the dataset
            files = [entry]
        parts.append(PartSpec(label, name, files, float(weight)))
    return parts


class MixedSamples(IterableDataset):
    """The parts of a mixture, prepared for the model: ``(spec, StreamingSamples or TrainingSamples)``. Read by a
    ``MixedLoader`` (the trainer builds one); iterating it directly is not how it is used."""

    def __init__(self, parts: list[tuple[PartSpec, Any]], seed: int) -> None:
        super().__init__()
        self.parts, self.seed = parts, seed

    def __iter__(self) -> Iterator[Any]:
        raise TypeError("MixedSamples is read by blip2_train.mixture.MixedLoader, one loader per part")


class _BatchesFrom:
    """A batch sampler's batches from ``start`` on (a resumed epoch skips what was trained; nothing is decoded)."""

    def __init__(self, sampler: GlobalBatchSampler, start: int) -> None:
        self.sampler, self.start = sampler, start

    def __iter__(self) -> Iterator[list]:
        return itertools.islice(iter(self.sampler), self.start, None)

    def __len__(self) -> int:
        return max(len(self.sampler) - self.start, 0)


class MapStream:
    """A map-style dataset's batches, epoch after epoch without end, in ``GlobalBatchSampler``'s order (rank r
    takes its slice of each global batch; every rank has as many batches per epoch). Position: the epoch and the
    batches of it trained; ``commit`` and the state as ``StreamLoader``'s."""

    def __init__(
        self,
        samples: TrainingSamples,
        collate_fn: Any,
        num_workers: int,
        batch_size: int,
        world_size: int,
        rank: int,
        seed: int,
        label: str,
    ) -> None:
        self.samples, self.collate_fn, self.num_workers, self.label = samples, collate_fn, num_workers, label
        self.sampler = GlobalBatchSampler(len(samples), batch_size, world_size, rank, seed)
        self.epoch, self.trained = 0, 0  # trained: batches of self.epoch consumed by optimizer steps
        self.pending: list[tuple[int, int, list[str]]] = []  # (epoch, batch, keys) handed out, not yet committed
        self._batches: Any = None
        self._threads: list[Any] = []

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch, start = self.epoch, self.trained
        while True:
            self.sampler.set_epoch(epoch)
            order = _BatchesFrom(self.sampler, start)
            loader = DataLoader(
                self.samples,
                batch_sampler=order,
                collate_fn=self.collate_fn,
                num_workers=self.num_workers,
                return_list=True,
            )
            self._batches = iter(loader)
            try:
                # paddle's loader keeps the sampler's order: batch k holds the k-th index list
                for number, (indices, batch) in enumerate(zip(order, self._batches), start):
                    keys = [f"{self.label}:{index}" for _, index, *_ in indices]
                    self.pending.append((epoch, number, keys))
                    yield batch
            finally:
                self.close()
            epoch, start = epoch + 1, 0

    def commit(self) -> list[list[str]]:
        keys = []
        for epoch, number, batch_keys in self.pending:
            self.epoch, self.trained = epoch, number + 1
            keys.append(batch_keys)
        self.pending = []
        return keys

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batches": self.trained, "samples": len(self.samples)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("samples") != len(self.samples):
            raise DatasetError(
                f"{self.label}: the checkpoint's data position is for {state.get('samples')} samples, this dataset has "
                f"{len(self.samples)}: resume with the same data"
            )
        self.epoch, self.trained = int(state["epoch"]), int(state["batches"])

    def describe_position(self) -> str:
        return f"epoch {self.epoch}: batch {self.trained} of {len(self.sampler)}"

    def close(self, join: bool = False) -> None:
        batches, self._batches = self._batches, None
        shut_down(batches, self._threads, join)


class MixedLoader:
    """Batches drawn from the parts' loaders with the parts' weights; what the trainer iterates (no length:
    ``--max_steps`` ends it). ``commit``, ``state_dict`` and ``load_state_dict`` act on every part."""

    def __init__(self, parts: list[tuple[PartSpec, Any]], seed: int) -> None:
        self.specs = [spec for spec, _ in parts]
        self.loaders = [loader for _, loader in parts]
        self.weights = [spec.weight for spec in self.specs]
        self.seed = seed
        self.drawn = 0  # batches handed out (and, after a commit, trained)
        self.pending: list[int] = []  # the part of each batch handed out since the last commit

    def choose(self, n: int) -> int:
        """The part of the n-th batch: from (seed, n) only, the same on every rank and after a resume."""
        return random.Random(f"mixture:{self.seed}:{n}").choices(range(len(self.loaders)), self.weights)[0]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        streams = [iter(loader) for loader in self.loaders]  # generators: a part's loader starts when first drawn
        while True:
            part = self.choose(self.drawn)
            batch = next(streams[part])
            self.drawn += 1
            self.pending.append(part)
            yield batch

    def commit(self) -> list[list[str]]:
        per_part = [loader.commit() for loader in self.loaders]
        keys = [per_part[part].pop(0) for part in self.pending]
        self.pending = []
        return keys

    def log_fields(self) -> dict[str, Any]:
        return {"sources": [self.specs[part].label for part in self.pending]}

    def state_dict(self) -> dict[str, Any]:
        parts = [
            {"label": spec.label, "weight": spec.weight, "state": loader.state_dict()}
            for spec, loader in zip(self.specs, self.loaders)
        ]
        return {"drawn": self.drawn - len(self.pending), "seed": self.seed, "parts": parts}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = [(p["label"], p["weight"]) for p in state.get("parts", [])]
        ours = [(spec.label, spec.weight) for spec in self.specs]
        if saved != ours or state.get("seed") != self.seed:
            raise DatasetError(
                f"the checkpoint's data position is for the mixture {saved} with --seed {state.get('seed')}, this run "
                f"has {ours} with --seed {self.seed}: resume with the same --dataset, --sampling_weights and --seed"
            )
        for loader, part in zip(self.loaders, state["parts"]):
            loader.load_state_dict(part["state"])
        self.drawn = int(state["drawn"])

    def describe_position(self) -> str:
        where = "; ".join(
            f"{spec.label} {loader.describe_position()}" for spec, loader in zip(self.specs, self.loaders)
        )
        return f"batch {self.drawn} of the mixture: {where}"

    def close(self, join: bool = False) -> None:
        for loader in self.loaders:
            loader.close(join=join)


def build_mixed_loader(samples: MixedSamples, collate_fn: Any, args: Any) -> MixedLoader:
    """One loader per part, each with ``--dataloader_num_workers`` workers of its own."""
    world_size, rank = max(args.dataset_world_size, 1), max(args.dataset_rank, 0)
    parts = []
    for spec, part in samples.parts:
        if isinstance(part, StreamingSamples):
            loader: Any = StreamLoader(part, collate_fn, args.dataloader_num_workers, world_size)
        else:
            loader = MapStream(
                part,
                collate_fn,
                args.dataloader_num_workers,
                args.per_device_train_batch_size,
                world_size,
                rank,
                args.seed,
                spec.label,
            )
        parts.append((spec, loader))
    return MixedLoader(parts, samples.seed)
