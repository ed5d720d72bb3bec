"""Frozen-ViT feature cache: the image encoder's output for every image of a dataset, computed once.

With the ViT frozen, a training step spends most of its time encoding images whose encoding never changes. The
cache stores each image's ``last_hidden_state`` ([patches + 1, vision width]) from the eval transform (resize to
``image_size``, normalise; no random crop or flip) so training reads it back instead of decoding and encoding
the image. What this trades away: the training augmentation (LAVIS's pre-training uses a random resized crop and
a flip) cannot apply to features computed once.

Layout of a cache directory (each process of ``paddle.distributed.launch`` writes its own share, no
communication between them)::

    features-r000-00000.safetensors   one tensor "image_embeds" [rows, tokens, width] per shard
    part-r000-of-002.json             written last by rank 0: what made the cache (see ``CacheKey``), the
                                      index image path -> [shard, row], the images that could not be read

A training run refuses a cache made with another vision encoder (config or weights), image size or transform,
naming the cache directory and what differs; an image the cache does not hold is an error naming the image.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blip2_data import BadSampleError, ImageProcessor, ImageProcessorConfig

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
TENSOR_NAME = "image_embeds"
DTYPES = ("float32", "float16")
PART_GLOB = "part-r*-of-*.json"


class FeatureCacheError(ValueError):
    """A cache that is missing, incomplete, made differently from this run, or lacks an image."""


def part_file(rank: int, world: int) -> str:
    return f"part-r{rank:03d}-of-{world:03d}.json"


def shard_file(rank: int, shard: int) -> str:
    return f"features-r{rank:03d}-{shard:05d}.safetensors"


def image_key(path: str | os.PathLike) -> str:
    """How an image is named in the index: its absolute path (a moved dataset needs a new cache)."""
    return os.path.abspath(os.fspath(path))


def eval_transform(config: ImageProcessorConfig) -> dict[str, Any]:
    """The parts of the image pipeline that shape a cached feature (the eval transform: resize, normalise)."""
    return {
        "resize": config.image_size,
        "interpolation": config.interpolation,
        "mean": list(config.mean),
        "std": list(config.std),
    }


def vision_fingerprint(vision_model: Any) -> str:
    """A hash of the image encoder's weights as the model holds them (after any resize to the image size).

    Each tensor's bytes through CRC-32 (ViT-g's 4 GB in about 2 s; a cryptographic hash took 9 s here): this
    tells caches apart, it does not guard against forgery."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(vision_model.state_dict().items()):
        values = np.ascontiguousarray(tensor.numpy())
        crc = zlib.crc32(memoryview(values).cast("B"))  # no copy of the bytes
        digest.update(f"{name}:{values.dtype}:{values.shape}:{crc};".encode())
    return digest.hexdigest()


@dataclass
class CacheKey:
    """What a cached feature depends on; a training run's key must equal the cache's."""

    vision_config: dict[str, Any]
    vision_weights: str
    image_size: int
    transform: dict[str, Any]

    @classmethod
    def of(cls, model: Any, image_config: ImageProcessorConfig) -> CacheKey:
        vision_config = json.loads(json.dumps(dataclasses.asdict(model.config.vision_config)))
        # training switches that do not change a frozen (eval-mode) encoder's output
        for name in ("gradient_checkpointing", "dropout", "attention_dropout", "drop_path_rate"):
            vision_config.pop(name, None)
        return cls(vision_config, vision_fingerprint(model.vision_model), image_config.image_size,
                   eval_transform(image_config))  # fmt: skip

    def differences(self, other: CacheKey) -> list[str]:
        """``self`` is the cache's, ``other`` the run's: one line per field that differs."""
        found = []
        if self.image_size != other.image_size:
            found.append(f"image size: cache {self.image_size}, this run {other.image_size}")
        if self.transform != other.transform:
            keys = sorted(
                k for k in {*self.transform, *other.transform} if self.transform.get(k) != other.transform.get(k)
            )
            found += [f"transform {k}: cache {self.transform.get(k)}, this run {other.transform.get(k)}" for k in keys]
        if self.vision_config != other.vision_config:
            mine, theirs = self.vision_config, other.vision_config
            keys = sorted(k for k in {*mine, *theirs} if mine.get(k) != theirs.get(k))
            found += [f"vision encoder config {k}: cache {mine.get(k)}, this run {theirs.get(k)}" for k in keys]
        elif self.vision_weights != other.vision_weights:
            found.append(
                f"vision encoder weights: cache {self.vision_weights}, this run {other.vision_weights} (another "
                "checkpoint, or --load_model_path changed the ViT)"
            )
        return found


def process_rank() -> tuple[int, int]:
    """(rank, world size) as ``paddle.distributed.launch`` sets them; (0, 1) for a plain process."""
    return int(os.environ.get("PADDLE_TRAINER_ID", 0)), int(os.environ.get("PADDLE_TRAINERS_NUM", 1))


def write_cache(
    encode: Callable[[np.ndarray], np.ndarray],
    images: Iterable[str],
    image_config: ImageProcessorConfig,
    key: CacheKey,
    directory: str | os.PathLike,
    *,
    made_from: str,
    batch_size: int = 32,
    shard_size: int = 1024,
    dtype: str = "float32",
    skip_bad_samples: bool = False,
    rank: int = 0,
    world: int = 1,
) -> dict[str, Any]:
    """Encode this rank's share (every ``world``-th) of the distinct ``images`` and write its shards and part.

    ``encode``: pixels [n, 3, size, size] -> image encoder output [n, tokens, width] (float32). An image that
    cannot be read stops the run naming it, or with ``skip_bad_samples`` is recorded as bad (a training run
    with --skip_bad_samples then skips its samples). Returns the part's summary."""
    from safetensors.numpy import save_file

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size and shard_size must be positive, got {batch_size} and {shard_size}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _refuse_other_cache(directory, key, world)
    mine = sorted({image_key(path) for path in images})[rank::world]
    processor = ImageProcessor(image_config, train=False)
    index: dict[str, list] = {}
    bad: dict[str, str] = {}
    rows: list[np.ndarray] = []
    shard_names: list[str] = []

    def flush() -> None:
        if rows:
            name = shard_file(rank, len(shard_names))
            save_file({TENSOR_NAME: np.concatenate(rows).astype(dtype)}, str(directory / name))
            shard_names.append(name)
            rows.clear()

    filled = 0  # rows in the current shard
    for start in range(0, len(mine), batch_size):
        batch, paths = [], []
        for path in mine[start : start + batch_size]:
            try:
                batch.append(processor(path))
                paths.append(path)
            except Exception as error:
                message = f"cannot load image {path}: {type(error).__name__}: {error}"
                if not skip_bad_samples:
                    raise BadSampleError(f"{message} (pass --skip_bad_samples to record it and go on)") from error
                logger.warning("skipped: %s", message)
                bad[path] = message
        if not batch:
            continue
        features = np.asarray(encode(np.stack(batch)), dtype=np.float32)
        for path, feature in zip(paths, features):
            index[path] = [len(shard_names), filled]
            rows.append(feature[None])
            filled += 1
            if filled == shard_size:
                flush()
                filled = 0
        logger.info("rank %d: %d of %d images encoded", rank, min(start + batch_size, len(mine)), len(mine))
    flush()
    part = {
        "format": FORMAT_VERSION,
        "rank": rank,
        "world": world,
        "made_from": made_from,
        "dtype": dtype,
        "key": dataclasses.asdict(key),
        "shards": shard_names,
        "index": {path: [shard_names[shard], row] for path, (shard, row) in index.items()},
        "bad": bad,
    }
    staging = directory / (part_file(rank, world) + ".partial")
    staging.write_text(json.dumps(part))
    os.replace(staging, directory / part_file(rank, world))  # written last: its presence means this rank is done
    return {"rank": rank, "world": world, "images": len(index), "bad": len(bad), "shards": len(shard_names)}


def _refuse_other_cache(directory: Path, key: CacheKey, world: int) -> None:
    """Adding to a directory is only safe for the same cache (a rank re-run): anything else is refused."""
    for file in sorted(directory.glob(PART_GLOB)):
        part = json.loads(file.read_text())
        differences = CacheKey(**part["key"]).differences(key)
        if part["world"] != world:
            differences.append(f"written by {part['world']} processes, now {world}")
        if differences:
            raise FeatureCacheError(
                f"{directory} already holds another feature cache ({file.name}): {'; '.join(differences)}. "
                "Remove it or choose another --output_dir."
            )


class FeatureCache:
    """A finished cache, opened for reading: ``get(image_path)`` -> float32 [tokens, width]."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        files = sorted(self.directory.glob(PART_GLOB)) if self.directory.is_dir() else []
        if not files:
            raise FeatureCacheError(
                f"--feature_cache {self.directory}: no feature cache there (no {PART_GLOB}); make one with "
                "blip2-train cache-features --output_dir " + str(self.directory)
            )
        parts = [json.loads(file.read_text()) for file in files]
        worlds = {part["world"] for part in parts}
        if len(worlds) > 1:
            raise FeatureCacheError(f"--feature_cache {self.directory}: parts of runs with {sorted(worlds)} processes")
        world = worlds.pop()
        missing = sorted(set(range(world)) - {part["rank"] for part in parts})
        if missing:
            raise FeatureCacheError(
                f"--feature_cache {self.directory} is incomplete: rank(s) {missing} of {world} did not finish "
                f"(no {', '.join(part_file(r, world) for r in missing)}); run cache-features again"
            )
        if any(part["format"] != FORMAT_VERSION for part in parts):
            raise FeatureCacheError(
                f"--feature_cache {self.directory}: format {parts[0]['format']}, expected {FORMAT_VERSION}"
            )
        self.key = CacheKey(**parts[0]["key"])
        self.made_from, self.dtype = parts[0]["made_from"], parts[0]["dtype"]
        self.index: dict[str, tuple[str, int]] = {}
        self.bad: dict[str, str] = {}
        for part in parts:
            self.index.update({path: (shard, row) for path, (shard, row) in part["index"].items()})
            self.bad.update(part["bad"])
        self._open: dict[str, Any] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.index)

    def check(self, key: CacheKey) -> None:
        """Refuse the cache unless it was made as this run would encode its images."""
        differences = self.key.differences(key)
        if differences:
            raise FeatureCacheError(
                f"--feature_cache {self.directory} was made differently from this run (made from "
                f"{self.made_from}): {'; '.join(differences)}. Make a cache for this run with blip2-train "
                "cache-features, or train without --feature_cache."
            )

    def check_image_pipeline(self, image_config: ImageProcessorConfig) -> None:
        """The image size and transform alone: checked before the model is loaded (``check`` does all)."""
        self.check(
            dataclasses.replace(self.key, image_size=image_config.image_size, transform=eval_transform(image_config))
        )

    def check_images(self, paths: Sequence[str]) -> None:
        """Every image of the dataset is in the cache (or recorded there as unreadable)."""
        absent = sorted({image_key(p) for p in paths} - set(self.index) - set(self.bad))
        if absent:
            more = f" and {len(absent) - 1} more" if len(absent) > 1 else ""
            raise FeatureCacheError(
                f"--feature_cache {self.directory} has no features for image {absent[0]}{more}: it was made for "
                "other data; run blip2-train cache-features on this --dataset / --data_files"
            )

    def get(self, path: str | os.PathLike) -> np.ndarray:
        """This image's features as float32; a missing image raises naming it, an unreadable one BadSampleError."""
        name = image_key(path)
        if name in self.bad:
            raise BadSampleError(f"{self.bad[name]} (recorded by cache-features in {self.directory})")
        if name not in self.index:
            raise FeatureCacheError(f"--feature_cache {self.directory} has no features for image {name}")
        shard, row = self.index[name]
        if self._pid != os.getpid():  # a loader worker: open the files anew in this process
            self._open, self._pid = {}, os.getpid()
        if shard not in self._open:
            from safetensors import safe_open

            self._open[shard] = safe_open(str(self.directory / shard), framework="numpy")
        return np.asarray(self._open[shard].get_slice(TENSOR_NAME)[row : row + 1][0], dtype=np.float32)

    def __getstate__(self) -> dict[str, Any]:  # to loader workers: without open file handles
        return {**self.__dict__, "_open": {}}
