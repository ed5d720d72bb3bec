"""Training data: datasets from the command line, reproducible sampling and augmentation, batches for the models.

Reproducibility: the order of each epoch is a permutation drawn from (seed, epoch), and each sample's random
crop/flip from (seed, epoch, index), so a resumed run sees exactly the batches and pixels the straight run saw,
whatever the number of loader workers or when they ran.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from paddle.io import Dataset, DistributedBatchSampler

from blip2_data import (
    BadSampleError,
    Blip2Collator,
    DatasetError,
    ImageProcessor,
    ImageProcessorConfig,
    concat_datasets,
    load_dataset,
    pre_caption,
)
from blip2_data.webdataset_source import POSITION_KEY

from .feature_cache import FeatureCache, FeatureCacheError

logger = logging.getLogger(__name__)

REPLACED_KEY = "_replaced"  # notes of bad samples that an item stands in for
LOGGED_SKIPS_KEY = "_logged_skips"  # bad samples an item stands in for that its source has logged already
ERROR_KEY = "bad_sample_error"  # a failed item's message, carried to the main process by the batch
SKIPPED_BATCH_KEY = "resume_skipped_batch"  # a batch a resumed run passes over: nothing is decoded for it
IMAGE_EMBEDS_KEY = "image_embeds"  # an item's features from the feature cache, in place of its pixels
KEYS_KEY = "_keys"  # a streamed batch's sample keys as bytes, carried only for --log_consumed_samples


class CacheMissError(RuntimeError):
    """The feature cache lacks a sample's image (it was made for other data): never skipped as a bad sample."""


def parse_data_files(datasets: Sequence[str], data_files: Sequence[str] | None) -> list[tuple[str, list | None]]:
    """``--dataset`` names and ``--data_files IMAGE_ROOT,ANNOTATION`` entries -> (name, data_files) to load."""
    if not data_files:
        return [(name, None) for name in datasets]
    entries = []
    for text in data_files:
        root, sep, annotation = text.rpartition(",")
        if not sep or not root or not annotation:
            raise DatasetError(f"--data_files entries are IMAGE_ROOT,ANNOTATION_JSON; got {text!r}")
        entries.append([root, annotation, "train"])
    if len(datasets) == 1:
        return [(datasets[0], entries)]
    if len(datasets) != len(entries):
        raise DatasetError(
            f"{len(datasets)} --dataset names but {len(entries)} --data_files entries: give one entry per name, "
            "or one name for all entries"
        )
    return [(name, [entry]) for name, entry in zip(datasets, entries)]


def load_training_data(datasets: Sequence[str], data_files: Sequence[str] | None, skip_bad_samples: bool) -> Dataset:
    """The training split of every dataset asked for, as one dataset (image paths, raw captions, image ids)."""
    parts = []
    for name, files in parse_data_files(datasets, data_files):
        parts += load_dataset(name, files, splits=["train"], skip_bad_samples=skip_bad_samples)
    return parts[0] if len(parts) == 1 else concat_datasets(parts)


def split_caption(caption: str, rng: random.Random) -> tuple[str, str]:
    """Prefix-LM targets for an encoder-decoder LLM (the paper's FlanT5 stage 2): a random split at a word."""
    words = caption.split()
    if len(words) < 2:
        return "", caption
    cut = rng.randint(1, len(words) - 1)
    return " ".join(words[:cut]), " ".join(words[cut:])


# LAVIS's pretrain_stage1.yaml and pretrain_stage2.yaml give Visual Genome's images blip_image_train
# (RandomResizedCrop, flip, RandAugment(2, 5)) and COCO's blip2_image_train (no RandAugment).
RAND_AUGMENTED_DATASETS = frozenset({"vg_caption"})


class TrainingSamples(Dataset):
    """Items of ``dataset`` decoded and augmented, addressed by ``(epoch, index)`` keys.

    A bad sample (unreadable image, a caption that is empty once cleaned) raises :class:`BadSampleError` naming
    the file and row; with ``skip_bad_samples`` the next good sample stands in for it (so every batch keeps its
    size, which stage 1's cross-rank gathers need) and the item carries a note of what was skipped.

    ``defer_errors``: return the error as an item instead of raising it. paddle's DataLoader reads batches in a
    thread (or worker processes), where a raised error is only printed and the training loop waits forever;
    the batch carries it to the main process instead (see ``TrainingCollator`` and ``raise_deferred_error``).
    """

    def __init__(
        self,
        dataset: Dataset,
        image_config: ImageProcessorConfig,
        seed: int,
        skip_bad_samples: bool = False,
        split_for_prefix_lm: bool = False,
        max_words: int = 50,
        defer_errors: bool = False,
        augment: bool = True,
        features: FeatureCache | None = None,
    ) -> None:
        super().__init__()
        self.defer_errors, self.augment, self.features = defer_errors, augment, features
        self.dataset, self.image_config, self.seed = dataset, image_config, seed
        self.skip_bad_samples, self.split_for_prefix_lm, self.max_words = (
            skip_bad_samples,
            split_for_prefix_lm,
            max_words,
        )

    def __len__(self) -> int:
        return len(self.dataset)

    def _describe(self, index: int) -> str:
        describe = getattr(self.dataset, "describe", None)
        return describe(index) if describe else f"sample {index}"

    def _dataset_name(self, index: int) -> str | None:
        """The name of the dataset sample ``index`` comes from (coco_caption, vg_caption, ...)."""
        locate = getattr(self.dataset, "locate", None)
        return locate(index)[0].name if locate is not None else getattr(self.dataset, "name", None)

    def _image(self, sample: dict[str, Any], index: int, rng: random.Random) -> dict[str, np.ndarray]:
        """``{"image": pixels}``, or ``{"image_embeds": features}`` read from the feature cache."""
        if self.features is not None:
            try:
                return {IMAGE_EMBEDS_KEY: self.features.get(sample["image"])}
            except BadSampleError as error:
                raise BadSampleError(f"{self._describe(index)}: {error}") from error
            except FeatureCacheError as error:  # not a bad sample: the cache is for other data
                raise CacheMissError(f"{self._describe(index)}: {error}") from error
        config = self.image_config
        if self.augment and self._dataset_name(index) in RAND_AUGMENTED_DATASETS:
            config = dataclasses.replace(config, rand_augment=True)
        try:
            return {"image": ImageProcessor(config, train=self.augment, rng=rng)(sample["image"])}
        except Exception as error:
            raise BadSampleError(f"{self._describe(index)}: cannot load image {sample['image']}: {error}") from error

    def _load(self, epoch: int, index: int) -> dict[str, Any]:
        sample = self.dataset[index]
        rng = random.Random(f"{self.seed}:{epoch}:{index}")  # this sample's augmentation, in any process
        image = self._image(sample, index, rng)
        caption = pre_caption(sample["text_input"], self.max_words)
        if not caption:
            raise BadSampleError(f"{self._describe(index)}: caption {sample['text_input']!r} is empty once cleaned")
        item = {**image, "text_input": caption, "image_id": int(sample["image_id"])}
        if self.split_for_prefix_lm:
            item["text_input"], item["text_output"] = split_caption(caption, rng)
        return item

    def __getitem__(self, key: tuple[int, ...]) -> dict[str, Any]:
        epoch, index = key[:2]
        if len(key) > 2 and key[2]:  # fast-forwarded on resume (see GlobalBatchSampler.fast_forward)
            return {SKIPPED_BATCH_KEY: True}
        notes: list[str] = []
        for attempt in range(len(self)):
            current = (index + attempt) % len(self)
            try:
                item = self._load(epoch, current)
            except CacheMissError as error:
                if self.defer_errors:
                    return {ERROR_KEY: str(error)}
                raise
            except BadSampleError as error:
                if not self.skip_bad_samples:
                    message = f"{error} (pass --skip_bad_samples to skip such samples)"
                    if self.defer_errors:
                        return {ERROR_KEY: message}
                    raise BadSampleError(message) from error
                notes.append(str(error))
                continue
            item[REPLACED_KEY] = notes
            return item
        raise BadSampleError(f"no good sample left: all {len(self)} were bad; first: {notes[0]}")


class GlobalBatchSampler(DistributedBatchSampler):
    """Each step's global batch is the next ``batch_size * num_replicas`` indices of a (seed, epoch) permutation;
    rank r takes its r-th slice. One process with ``batch_size * N`` sees exactly what N ranks see together.
    The incomplete last global batch is dropped (every rank must gather tensors of one shape)."""

    def __init__(self, dataset_size: int, batch_size: int, num_replicas: int, rank: int, seed: int) -> None:
        self.dataset_size, self.batch_size = dataset_size, batch_size
        self.nranks, self.local_rank, self.seed, self.epoch = num_replicas, rank, seed, 0
        self.global_batch = batch_size * num_replicas
        if dataset_size < self.global_batch:
            raise DatasetError(
                f"{dataset_size} training samples cannot fill one global batch of {self.global_batch} "
                f"({batch_size} per process x {num_replicas} processes)"
            )

    def set_epoch(self, epoch: int = 0, consumed_samples: int | None = None) -> None:
        self.epoch = epoch

    def fast_forward(self, epoch: int, batches: int) -> None:
        """Mark the first ``batches`` of ``epoch`` as passed over: a resumed run iterates them (PaddleNLP skips
        by iterating) but their samples are never loaded, so resuming late in an epoch costs no decoding."""
        self.skip_epoch, self.skip_batches = epoch, batches

    def __iter__(self) -> Iterator[list[tuple[int, int, bool]]]:
        order = np.random.RandomState([self.seed, self.epoch]).permutation(self.dataset_size)
        skipped = getattr(self, "skip_batches", 0) if getattr(self, "skip_epoch", None) == self.epoch else 0
        for step in range(len(self)):
            start = step * self.global_batch + self.local_rank * self.batch_size
            yield [(self.epoch, int(i), step < skipped) for i in order[start : start + self.batch_size]]

    def __len__(self) -> int:
        return self.dataset_size // self.global_batch


class TrainingCollator:
    """Blip2Collator's batch reduced to the model's inputs (numpy arrays only, so paddle's loader makes tensors).

    Stage 1 passes the image ids on as ``image_ids`` (captions of one image are ITC positives and never ITM
    negatives); stage 2 passes ``labels``. ``bad_samples`` counts the skipped samples in the batch.
    """

    def __init__(self, collator: Blip2Collator, stage: str, carry_keys: bool = False) -> None:
        self.collator, self.stage = collator, stage
        self.carry_keys = carry_keys  # streamed items: their keys too, for --log_consumed_samples

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        if all(SKIPPED_BATCH_KEY in item for item in items):
            return {SKIPPED_BATCH_KEY: np.ones(1, dtype=np.int8)}
        failed = [item[ERROR_KEY] for item in items if ERROR_KEY in item]
        if failed:  # text travels as bytes: paddle's loader passes only arrays
            return {ERROR_KEY: np.frombuffer(failed[0].encode("utf-8"), dtype=np.uint8).copy()}
        notes = [note for item in items for note in item.pop(REPLACED_KEY, [])]
        for note in notes:
            logger.warning("skipped a bad sample: %s", note)
        logged = sum(item.pop(LOGGED_SKIPS_KEY, 0) for item in items)
        batch = self.collator(items)
        inputs = {**image_inputs(batch), "input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if self.stage == "stage1":
            inputs["image_ids"] = batch["image_id"]
        else:
            inputs["labels"] = batch["labels"]
        inputs["bad_samples"] = np.asarray([len(notes) + logged], dtype=np.int64)
        if POSITION_KEY in items[0]:  # streamed items: where each came from, for the trainer to mark consumed
            inputs[POSITION_KEY] = np.asarray([item[POSITION_KEY] for item in items], dtype=np.int64)
            if self.carry_keys:
                inputs[KEYS_KEY] = encode_keys([item["key"] for item in items])
        return inputs


def image_inputs(batch: dict[str, Any]) -> dict[str, np.ndarray]:
    """The batch's images for the model: ``pixel_values``, or ``image_embeds`` from the feature cache."""
    if IMAGE_EMBEDS_KEY in batch:
        return {IMAGE_EMBEDS_KEY: np.stack(batch[IMAGE_EMBEDS_KEY]).astype(np.float32, copy=False)}
    return {"pixel_values": batch["pixel_values"]}


def raise_deferred_error(inputs: dict[str, Any]) -> None:
    """Raise, in the main process, the error a batch carries (see ``TrainingSamples(defer_errors=True)``)."""
    if ERROR_KEY in inputs:
        value = inputs[ERROR_KEY]
        value = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
        message = bytes(value.astype(np.uint8)).decode("utf-8")
        raise BadSampleError(message)


def encode_keys(keys: list[str]) -> np.ndarray:
    """Keys as a zero-padded uint8 [batch, longest] array (paddle's loader passes only arrays)."""
    raw = [key.encode("utf-8") for key in keys]
    out = np.zeros((len(raw), max(len(r) for r in raw)), dtype=np.uint8)
    for row, data in enumerate(raw):
        out[row, : len(data)] = np.frombuffer(data, dtype=np.uint8)
    return out


def decode_keys(array: Any) -> list[str]:
    array = array.numpy() if hasattr(array, "numpy") else np.asarray(array)
    return [bytes(row).rstrip(b"\0").decode("utf-8") for row in array.astype(np.uint8)]
