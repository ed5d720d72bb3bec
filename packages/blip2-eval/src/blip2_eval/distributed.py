"""Which shard this process evaluates, from the variables ``python -m paddle.distributed.launch`` sets.

No collective communication is needed: each rank writes its own results file and rank 0 gathers them from the
output directory (which all ranks must see, as they do on one machine or a shared filesystem).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Process:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, index: int) -> bool:
        """Item ``index`` of the dataset belongs to this rank (round robin: no padding, no duplicates)."""
        return index % self.world_size == self.rank


def current_process() -> Process:
    rank = os.environ.get("PADDLE_TRAINER_ID", os.environ.get("RANK", "0"))
    world = os.environ.get("PADDLE_TRAINERS_NUM", os.environ.get("WORLD_SIZE", "1"))
    process = Process(int(rank), int(world))
    if not 0 <= process.rank < process.world_size:
        raise ValueError(f"rank {process.rank} is outside a world of {process.world_size} processes")
    return process
