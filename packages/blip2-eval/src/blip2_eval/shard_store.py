"""Results written as they are produced, one JSON Lines file per rank, resumable and gathered by rank 0.

A rerun of the same command reads every shard file in the folder, skips the items already there and appends
the rest, so a killed run continues where it stopped (also with another number of processes). A line cut off
by the kill is dropped and its item done again. Gathering keeps the first record of each key, so items written
twice (two runs racing, or a changed world size) appear once.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

SHARD_GLOB = "rank-*.jsonl"


def shard_path(folder: Path, rank: int) -> Path:
    return folder / f"rank-{rank:03d}.jsonl"


def read_records(path: Path) -> list[dict]:
    """Complete lines of a shard file; a last line without its newline (a kill mid-write) is ignored."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines[:-1], start=1):  # lines[-1] is "" or an unfinished line
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{path}, line {number}: not valid JSON ({error.msg}); delete the file to redo it"
                ) from None
    return records


def drop_unfinished_line(path: Path) -> None:
    """Cut an unfinished last line (a killed write) so that appending starts on a fresh line."""
    with open(path, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            f.truncate(end)


class ShardStore:
    """``folder/rank-NNN.jsonl`` files of records identified by ``record[key]``."""

    def __init__(self, folder: str | os.PathLike, key: str) -> None:
        self.folder = Path(folder)
        self.key = key
        self.folder.mkdir(parents=True, exist_ok=True)

    def records(self) -> dict[Any, dict]:
        """Every finished record of every shard, first one per key."""
        found: dict[Any, dict] = {}
        for path in sorted(self.folder.glob(SHARD_GLOB)):
            for record in read_records(path):
                found.setdefault(record[self.key], record)
        return found

    def done_keys(self) -> set:
        return set(self.records())

    def writer(self, rank: int) -> ShardWriter:
        return ShardWriter(shard_path(self.folder, rank))

    def wait_for(self, keys: Sequence, timeout: float, poll: float = 1.0) -> dict[Any, dict]:
        """Records for all ``keys`` (the other ranks still writing theirs), or an error naming the missing ones."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.records()
            missing = [k for k in keys if k not in records]
            if not missing:
                return records
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.folder}: after {timeout:.0f} s still no result for {len(missing)} item(s), e.g. "
                    f"{missing[:10]}; did another rank fail? Rerun the same command to complete them"
                )
            time.sleep(poll)

    def gather(self, keys: Sequence, timeout: float) -> list[dict]:
        """Records in the order of ``keys`` (the dataset's), once every rank has written its share."""
        records = self.wait_for(keys, timeout)
        return [records[k] for k in keys]


class ShardWriter:
    """Appends records to one shard file, each batch flushed to disk before the next starts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.exists():
            drop_unfinished_line(path)
        self.file = open(path, "a", encoding="utf-8")

    def write(self, records: Iterable[dict]) -> None:
        self.file.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
