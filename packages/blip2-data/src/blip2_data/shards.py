"""Which tar shards a dataset has, and which of them each (rank, DataLoader worker) reads in an epoch.

The split rule: every epoch the shard list is shuffled with ``(seed, epoch)`` (the same order on every rank), and
shard ``i`` of that order goes to slot ``i % slots``, where slot ``rank * num_workers + worker`` and ``slots =
world_size * num_workers``. Each shard is read by exactly one slot, so every sample is seen once per epoch across
the job. When the shard count does not divide evenly, the first ``shards % slots`` slots get one shard more and
the others end earlier; no shard is repeated. A slot with no shard at all yields nothing.
"""

from __future__ import annotations

import importlib
import os
import random
from collections.abc import Sequence
from types import ModuleType

from .errors import DatasetError


def import_optional(module: str) -> ModuleType:
    """``webdataset`` (or ``braceexpand``, which it installs): an optional extra of blip2-data."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"reading or writing tar shards needs the webdataset package: pip install 'blip2-data[webdataset]' "
            f"(or pip install webdataset); missing: {error.name}",
            name=error.name,
        ) from None


def expand_shards(patterns: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Local shard paths from paths and brace patterns (``shards/{00000..00099}.tar``), in the order given.

    A directory stands for the ``.tar`` files in it (sorted). Every shard must exist: a missing one would
    otherwise only show up as a slot that ends early, far into training.
    """
    braceexpand = import_optional("braceexpand").braceexpand  # webdataset's own expansion (its dependency)

    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    shards: list[str] = []
    for pattern in patterns:
        pattern = os.fspath(pattern)
        if os.path.isdir(pattern):
            shards += sorted(os.path.join(pattern, n) for n in os.listdir(pattern) if n.endswith(".tar"))
            continue
        shards += list(braceexpand(pattern))
    if not shards:
        raise DatasetError(f"no shards in {list(patterns)}")
    missing = [s for s in shards if not os.path.isfile(s)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(f"{len(missing)} of {len(shards)} shards do not exist: {missing[0]}{more}")
    if len(set(shards)) != len(shards):
        raise DatasetError("a shard is listed twice: its samples would be seen twice per epoch")
    return shards


def epoch_order(num_shards: int, seed: int, epoch: int, shuffle: bool) -> list[int]:
    """The shard indices in this epoch's reading order; identical on every rank and worker."""
    order = list(range(num_shards))
    if shuffle:
        random.Random(f"shards:{seed}:{epoch}").shuffle(order)
    return order


def slot_shards(
    num_shards: int,
    *,
    rank: int,
    world_size: int,
    worker: int,
    num_workers: int,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
) -> list[int]:
    """The shard indices that worker ``worker`` of rank ``rank`` reads in ``epoch``, in reading order."""
    if not 0 <= rank < world_size or not 0 <= worker < num_workers:
        raise ValueError(
            f"need 0 <= rank < world_size and 0 <= worker < num_workers, got {rank}/{world_size}, "
            f"{worker}/{num_workers}"
        )
    slots = world_size * num_workers
    return epoch_order(num_shards, seed, epoch, shuffle)[rank * num_workers + worker :: slots]
