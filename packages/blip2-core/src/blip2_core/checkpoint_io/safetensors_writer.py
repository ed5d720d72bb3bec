"""Writing a state dict as safetensors in HF's layout: one file, or shards plus an index; each file atomically."""

from __future__ import annotations

import json
import os
import re
import stat
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from queue import Queue
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from .file_names import SAFETENSORS_INDEX_NAME, SAFETENSORS_NAME


def write_safetensors(
    state_dict: Mapping[str, np.ndarray],
    directory: str | os.PathLike,
    max_shard_size: int | str = "5GB",
    metadata: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write ``state_dict`` into ``directory`` in HF's layout; return the files written.

    One ``model.safetensors`` when the tensors fit in ``max_shard_size`` (bytes, or a string like ``"5GB"`` /
    ``"500MiB"``), else shards ``model-00001-of-0000N.safetensors`` plus ``model.safetensors.index.json``. A
    tensor larger than the limit gets a shard of its own. Earlier files of either layout in ``directory`` are
    removed first, so a loader cannot pick up a stale one. ``metadata`` is stored in each file's header; by
    default there is none, which both HF transformers and PaddleNLP accept (each rejects the other's
    ``format`` tag).
    """
    limit = parse_size(max_shard_size)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {name: _writable_array(name, value) for name, value in state_dict.items()}

    shards: list[dict[str, np.ndarray]] = [{}]
    shard_bytes = 0
    for name, array in arrays.items():
        if shards[-1] and shard_bytes + array.nbytes > limit:
            shards.append({})
            shard_bytes = 0
        shards[-1][name] = array
        shard_bytes += array.nbytes

    for stale in [directory / SAFETENSORS_NAME, directory / SAFETENSORS_INDEX_NAME, *_shard_files(directory)]:
        stale.unlink(missing_ok=True)

    header_metadata = dict(metadata) if metadata is not None else None
    if len(shards) == 1:
        target = directory / SAFETENSORS_NAME
        _atomic_save(shards[0], target, header_metadata)
        return [target]

    written = []
    weight_map = {}
    for number, shard in enumerate(shards, start=1):
        target = directory / f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        _atomic_save(shard, target, header_metadata)
        weight_map.update(dict.fromkeys(shard, target.name))
        written.append(target)
    index = {"metadata": {"total_size": sum(a.nbytes for a in arrays.values())}, "weight_map": weight_map}
    index_path = directory / SAFETENSORS_INDEX_NAME
    tmp = index_path.with_name(index_path.name + ".tmp")
    tmp.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, index_path)
    return [*written, index_path]


_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parse_size(size: int | str) -> int:
    """Bytes in ``size``: an int, or a string like ``"5GB"`` (decimal, as HF uses) or ``"4GiB"`` (binary)."""
    if isinstance(size, int):
        value = size
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(size))
        if not match or match.group(2).upper() not in _SIZE_UNITS:
            raise ValueError(f"cannot read a size from {size!r}; use bytes or e.g. '5GB', '500MiB'")
        value = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])
    if value <= 0:
        raise ValueError(f"max_shard_size must be positive, got {size!r}")
    return value


def _writable_array(name: str, value: Any) -> np.ndarray:
    if not isinstance(name, str):
        raise TypeError(f"state dict keys must be strings, got {name!r}")
    array = np.asarray(value)
    if array.dtype.kind not in "biufc":
        raise TypeError(f"{name}: cannot write dtype {array.dtype} to safetensors")
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    # save_file writes the raw buffer, so views must be compacted; np.require keeps 0-d arrays 0-d.
    return np.require(array, requirements="C")


def _shard_files(directory: Path) -> Iterable[Path]:
    return (
        p for p in directory.glob("model-*-of-*.safetensors") if re.fullmatch(r"model-\d+-of-\d+\.safetensors", p.name)
    )


def _atomic_save(tensors: dict[str, np.ndarray], target: Path, metadata: dict[str, str] | None) -> None:
    # Written under a temporary name and renamed, so a reader never sees half a file.
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with open(tmp, "wb"):  # a plain new file gets the usual mode (0o666 less the umask), read back below
        pass
    mode = stat.S_IMODE(os.stat(tmp).st_mode)
    save_file(tensors, str(tmp), metadata=metadata)
    os.chmod(tmp, mode)  # safetensors writes its files with mode 0o600, readable by their owner alone
    os.replace(tmp, target)


ALIGNMENT = 64  # bytes
_SAFETENSORS_NAMES = {"<f8": "F64", "<f4": "F32", "<f2": "F16", "<i8": "I64", "<i4": "I32", "<i2": "I16", "|i1": "I8",
                      "<u8": "U64", "<u4": "U32", "<u2": "U16", "|u1": "U8", "|b1": "BOOL"}  # fmt: skip


def write_aligned_safetensors(
    target: str | os.PathLike,
    tensors: Sequence[tuple[str, tuple[int, ...], str]],
    produce: Callable[[str], np.ndarray],
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write one safetensors file, tensor by tensor, with every tensor's data 64-byte aligned in the file.

    ``tensors``: (name, shape, numpy dtype) of each; ``produce(name)`` returns its array when it is written, so
    that only one is ever in memory. The header is padded with spaces, and tensors whose size is not a multiple
    of 64 bytes go last, so that the file has no holes (any safetensors reader takes it) and a page-aligned
    mapping of it gives aligned arrays. Written under a temporary name, then renamed."""
    target = Path(target)
    ordered = sorted(tensors, key=lambda t: (_nbytes(t) % ALIGNMENT != 0,))  # stable: the given order otherwise
    header: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, shape, dtype in ordered:
        code = np.dtype(dtype).newbyteorder("<").str if np.dtype(dtype).itemsize > 1 else np.dtype(dtype).str
        header[name] = {"dtype": _SAFETENSORS_NAMES[code], "shape": [int(d) for d in shape],
                        "data_offsets": [offset, offset + _nbytes((name, shape, dtype))]}  # fmt: skip
        offset += _nbytes((name, shape, dtype))
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-(8 + len(raw)) % ALIGNMENT)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    # The disk writes one tensor while the next is produced (both release the GIL): three at most in memory.
    queue: Queue[np.ndarray | None] = Queue(maxsize=1)
    failed: list[BaseException] = []

    def write_all(f: Any) -> None:
        try:
            while (array := queue.get()) is not None:
                if not failed:
                    f.write(memoryview(array.reshape(-1)).cast("B"))
        except BaseException as error:  # reported by the producer, which stops
            failed.append(error)
            while queue.get() is not None:
                pass

    try:
        with open(tmp, "wb") as f:
            f.write(len(raw).to_bytes(8, "little") + raw)
            writer = threading.Thread(target=write_all, args=(f,), name="safetensors-writer", daemon=True)
            writer.start()
            try:
                for name, shape, dtype in ordered:
                    if failed:
                        break
                    # np.require keeps a 0-d array 0-d (np.ascontiguousarray makes it 1-d)
                    array = np.require(produce(name), dtype=np.dtype(dtype).newbyteorder("<"), requirements="C")
                    if tuple(array.shape) != tuple(shape):
                        raise ValueError(f"{name}: produced shape {array.shape}, declared {tuple(shape)}")
                    queue.put(array)
                    del array
            finally:
                queue.put(None)
                writer.join()
            if failed:
                raise failed[0]
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _nbytes(spec: tuple[str, tuple[int, ...], str]) -> int:
    _, shape, dtype = spec
    count = 1
    for dim in shape:
        count *= int(dim)
    return count * np.dtype(dtype).itemsize
