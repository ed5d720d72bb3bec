"""One tar shard as img2dataset writes it (``{key}.jpg`` + ``{key}.txt`` and/or ``{key}.json``), read with the
``webdataset`` package into records: the key, the image bytes and the captions, or a note of what is wrong.

Images are not decoded here: records wait in the shuffle buffer as bytes, and a resumed run re-reads them
without decoding.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

from .shards import import_optional

IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")


@dataclass(frozen=True)
class Record:
    """Sample ``index`` (0-based, in tar order) of ``shard``; ``problem`` is set for a bad one."""

    shard: str
    index: int
    key: str
    image: bytes = b""
    captions: tuple[str, ...] = ()
    problem: str = ""

    def where(self) -> str:
        return f"shard {self.shard} sample {self.index} key {self.key!r}"


def sample_captions(sample: dict) -> list[str]:
    """A json's ``captions`` list (several per image, e.g. CapFilt's), else its ``caption``, else the ``.txt``."""
    captions: list = []
    if "json" in sample:
        meta = json.loads(sample["json"])
        if isinstance(meta, dict):
            found = meta.get("captions", meta.get("caption"))
            captions = found if isinstance(found, list) else [found] if found is not None else []
    if not captions and "txt" in sample:
        captions = [sample["txt"].decode("utf-8")]
    return [c.strip() for c in captions if isinstance(c, str) and c.strip()]


def to_record(shard: str, index: int, sample: dict) -> Record:
    key = sample["__key__"]
    image = next((sample[s] for s in IMAGE_SUFFIXES if s in sample), None)
    if image is None:
        return Record(shard, index, key, problem=f"no image (.{'/.'.join(IMAGE_SUFFIXES)}) among {sorted(sample)}")
    try:
        captions = sample_captions(sample)
    except (ValueError, UnicodeDecodeError) as error:  # a broken .json or .txt
        return Record(shard, index, key, problem=f"unreadable caption: {type(error).__name__}: {error}")
    if not captions:
        return Record(shard, index, key, problem="no caption (.txt, or .json 'caption' / 'captions')")
    return Record(shard, index, key, image=image, captions=tuple(captions))


def read_shard(shard: str) -> Iterator[Record]:
    """The shard's records in tar order. A truncated or corrupt tar ends with one record whose problem says so,
    naming the last good key (what follows it is lost)."""
    tariterators = import_optional("webdataset.tariterators")

    index, last_key = 0, None
    with open(shard, "rb") as stream:
        files = ({**f, "__url__": shard} for f in tariterators.tar_file_iterator(stream))
        try:
            for sample in tariterators.group_by_keys(files):
                yield to_record(shard, index, sample)
                index, last_key = index + 1, sample["__key__"]
        except (tarfile.TarError, OSError, EOFError) as error:
            after = f"after key {last_key!r}" if last_key is not None else "before its first sample"
            yield Record(shard, index, "?", problem=f"truncated or corrupt tar {after}: {error}")
