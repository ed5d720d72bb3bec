"""Reading ``.safetensors`` files into numpy arrays, memory-mapped, bf16 included."""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from .bfloat16 import BFLOAT16_WORDS, bf16_to_float32
from .errors import CheckpointError, IncompleteCheckpointError

_SAFETENSORS_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",  # widened to float32 after reading
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U64": "<u8",
    "U32": "<u4",
    "U16": "<u2",
    "U8": "u1",
    "BOOL": "?",
    "C64": "<c8",
}
_MAX_HEADER_BYTES = 100 * 2**20


def read_safetensors(
    path: str | os.PathLike, keep_bfloat16: bool = False, writable: bool = False
) -> dict[str, np.ndarray]:
    """Read a ``.safetensors`` file into numpy arrays (bf16 widened to float32); no trust needed.

    Each tensor is memory-mapped on its own: its bytes are read when it is used, and its pages leave the
    process's memory when the array (and every view of it) is dropped, so loading a 15 GB checkpoint into a
    model, one tensor after another, holds neither a second 15 GB copy nor the whole file mapped. Parsed here
    rather than with ``safetensors.numpy``, which refuses bf16. ``keep_bfloat16``: bf16 tensors come back as
    ``BFLOAT16_WORDS`` (no float32 copy; a loader converts them one at a time). ``writable``: the mappings are
    copy-on-write (``mmap.ACCESS_COPY``): the arrays can be written, each write lands in this process's own copy
    of the page and never in the file, so that a paddle tensor can take an array's memory as it is (a parameter
    may be written, by an optimizer say).
    """
    path = Path(path)
    file_size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path}: too short to be a safetensors file")
        (header_size,) = struct.unpack("<Q", prefix)
        if header_size > _MAX_HEADER_BYTES:
            raise CheckpointError(f"{path}: not a safetensors file (header size {header_size})")
        if header_size > file_size - 8:
            raise IncompleteCheckpointError(_incomplete(path, file_size, 8 + header_size))
        try:
            header = json.loads(f.read(header_size))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path}: not a safetensors file (bad header: {e})") from None
        data_start = 8 + header_size
        ends = [info["data_offsets"][1] for name, info in header.items() if name != "__metadata__" and _has_end(info)]
        if ends and data_start + max(ends) > file_size:
            raise IncompleteCheckpointError(_incomplete(path, file_size, data_start + max(ends)))
        state_dict = {}
        for name, info in header.items():
            if name != "__metadata__":
                state_dict[name] = _read_tensor(f, path, name, info, data_start, file_size, keep_bfloat16, writable)
    return state_dict


def _has_end(info: Any) -> bool:
    offsets = info.get("data_offsets") if isinstance(info, dict) else None
    return isinstance(offsets, list) and len(offsets) == 2 and isinstance(offsets[1], int)


def _incomplete(path: Path, size: int, needed: int) -> str:
    return (
        f"{path} is incomplete: {size:,} of the {needed:,} bytes its header describes (a download cut off?). "
        f"Delete it and fetch it again."
    )


def _read_tensor(
    file: Any, path: Path, name: str, info: Any, data_start: int, file_size: int, keep_bfloat16: bool, writable: bool
) -> np.ndarray:
    try:
        dtype_name, shape, (begin, end) = info["dtype"], [int(d) for d in info["shape"]], info["data_offsets"]
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path}: bad header entry for {name!r}: {info!r}") from None
    if dtype_name not in _SAFETENSORS_DTYPES:
        raise CheckpointError(f"{path}: tensor {name!r} has dtype {dtype_name}, which numpy cannot hold")
    dtype = np.dtype(_SAFETENSORS_DTYPES[dtype_name])
    count = math.prod(shape)
    if end - begin != count * dtype.itemsize or begin < 0 or data_start + end > file_size:
        raise CheckpointError(f"{path}: tensor {name!r} offsets {begin}..{end} do not fit shape {shape} {dtype_name}")
    if count == 0:
        return np.empty(shape, dtype=dtype.newbyteorder("="))
    # A mapping of this tensor's pages alone (the array keeps it alive; it is unmapped with the array).
    start = data_start + begin
    aligned = start - start % mmap.ALLOCATIONGRANULARITY
    access = mmap.ACCESS_COPY if writable else mmap.ACCESS_READ
    mapped = mmap.mmap(file.fileno(), data_start + end - aligned, offset=aligned, access=access)
    array = np.frombuffer(mapped, dtype=dtype, count=count, offset=start - aligned).reshape(shape)
    array = array.astype(dtype.newbyteorder("="), copy=False)
    if dtype_name != "BF16":
        return array
    return array.view(BFLOAT16_WORDS) if keep_bfloat16 else bf16_to_float32(array)
