"""Putting converted checkpoint weights into a model: ``assign_weights`` and the ``LoadReport`` it returns, and
``in_dtype``, the numpy-side dtype conversion (bfloat16 included, which numpy lacks) it does on the way."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from ._paddle import nn, paddle

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class LoadReport:
    """What a load did not use (``unexpected``), did not find (``missing``), and changed on the way (``notes``)."""

    missing: list[str] = dataclasses.field(default_factory=list)
    unexpected: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def log(self, source: str, level: int = logging.WARNING) -> None:
        for note in self.notes:
            logger.log(level, "%s: %s", source, note)
        if self.missing:
            logger.log(level, "%s: %d weights not in the checkpoint, left as initialised: %s", source,
                       len(self.missing), _first(self.missing))  # fmt: skip
        if self.unexpected:
            logger.log(level, "%s: %d checkpoint weights unused: %s", source, len(self.unexpected),
                       _first(self.unexpected))  # fmt: skip


def _first(names: list[str], count: int = 8) -> str:
    return ", ".join(names[:count]) + (f" ... (+{len(names) - count})" if len(names) > count else "")


def assign_weights(
    model: nn.Layer,
    weights: dict[str, Any],
    source: str | None = None,
    dtypes: dict[str, str] | None = None,
    consume: bool = False,
    share_memory: bool = False,
) -> LoadReport:
    """Set every parameter of ``model`` named in ``weights`` (already in our names, as numpy arrays).

    A scalar saved as shape [] or [1] fits either; any other shape mismatch is an error naming the key and
    both shapes. Names the model lacks are reported as ``unexpected``, parameters left unset as ``missing``.

    Each array is converted alone, straight into its parameter's dtype (or ``dtypes[key]``: "bfloat16" puts a
    float32 weight into a bf16 parameter), and copied into paddle once. A parameter built under
    ``paddle.LazyGuard`` (no memory, no random values) takes that copy's memory as it is, so a model built lazily
    and loaded here never holds a second copy of its weights; missing ones are then initialised as the model
    defines them. ``consume``: drop each array from ``weights`` once it is set, so that its memory (or its
    memory-mapped file pages) is given back before the next one is read.

    On a CPU, a lazy parameter takes its array's memory through DLPack (``paddle.utils.dlpack.from_dlpack``):
    a copy made here is made by numpy into 64-byte aligned memory (3-4x faster than ``set_value``), and with
    ``share_memory`` an array that needs no conversion (C-contiguous, writeable, 64-byte aligned, the parameter's
    dtype) is taken as it is, without any copy: for a loader whose arrays are its own, e.g. copy-on-write
    mappings of a checkpoint file (``mmap.ACCESS_COPY``), whose pages are then read when the model first uses
    them. Never for arrays the caller still holds: the parameter would change with them.
    """
    params = model.state_dict()
    dtypes = dtypes or {}
    report = LoadReport()
    loaded = set()
    taken: set[int] = set()  # memory a parameter took as it is: one array tied to two names is copied for the 2nd
    for key in list(weights):
        value = weights.pop(key) if consume else weights[key]
        target = params.get(key)
        if target is None:
            report.unexpected.append(key)
            continue
        value = np.asarray(value)
        if value.size == 1 and int(np.prod(target.shape)) == 1:
            value = value.reshape(target.shape)
        if tuple(value.shape) != tuple(target.shape):
            where = f"{source}: " if source else ""
            raise ValueError(
                f"{where}shape mismatch for {key}: checkpoint {tuple(value.shape)} vs model {tuple(target.shape)}"
            )
        dtype = dtypes.get(key) or _dtype_name(target.dtype)
        value = in_dtype(value, dtype)
        if target._is_initialized() and _dtype_name(target.dtype) == dtype:
            target.set_value(value)
        else:  # lazy, or a new dtype: the parameter takes a new tensor's memory (no public call does this in place)
            fresh = _cpu_tensor(value, dtype, share_memory, taken)
            if fresh is None:
                fresh = paddle.empty(target.shape, dtype=dtype)
                fresh.set_value(value)  # set_value copies a numpy array 2-5x faster than paddle.to_tensor does
            fresh._share_buffer_to(target)
            del fresh
        loaded.add(key)
        del value
    report.missing = sorted(set(params) - loaded)
    for key in report.missing:
        target = params[key]
        if hasattr(target, "initialize") and not target._is_initialized():
            target.initialize()
        if key in dtypes and _dtype_name(target.dtype) != dtypes[key]:
            target.astype(dtypes[key])._share_buffer_to(target)
    return report


# bfloat16 words as checkpoint readers may hand them over (numpy has no bfloat16): one uint16 field, so that
# any arithmetic on them fails instead of treating the words as numbers; blip2-core's readers use the same dtype.
BFLOAT16_WORDS = np.dtype([("bfloat16", "<u2")])


def in_dtype(value: np.ndarray, dtype: str) -> np.ndarray:
    """``value`` (a float array, or bfloat16 words) as ``dtype``; bfloat16 comes back as uint16 words, which
    ``paddle.to_tensor`` takes as bfloat16. Rounds to nearest even, as paddle's own cast does."""
    if value.dtype == BFLOAT16_WORDS:
        words = value.view(np.uint16)
        if dtype == "bfloat16":
            return words
        value = (words.astype(np.uint32) << 16).view(np.float32)  # exact: a bf16 is a float32's high half
    if dtype != "bfloat16":
        return np.asarray(value, dtype=dtype)  # no copy where it is already so (a memory-mapped float32 weight)
    bits = np.ascontiguousarray(value, dtype=np.float32).view(np.uint32)
    rounded = (bits + (0x7FFF + ((bits >> 16) & 1))) >> 16  # uint32 arithmetic: wraps nothing below NaN
    return np.where(np.isnan(value), np.uint32(0x7FC0), rounded).astype(np.uint16)


def _dtype_name(dtype: Any) -> str:
    return str(dtype).replace("paddle.", "")


ALIGNMENT = 64  # bytes: what paddle's own CPU allocations give at least (a cache line, an AVX-512 vector)
# numpy dtypes that DLPack carries as they are (bfloat16 words are uint16 to numpy: they take the copying path)
_DLPACK_DTYPES = ("float16", "float32", "float64", "int8", "uint8", "int16", "int32", "int64")


def is_shareable(value: np.ndarray, dtype: str) -> bool:
    """Whether a CPU parameter of ``dtype`` can take ``value``'s memory as it is: C-contiguous, writeable (a
    parameter may be written, e.g. by an optimizer), 64-byte aligned, of that dtype, and not empty."""
    return (
        dtype in _DLPACK_DTYPES
        and value.dtype == np.dtype(dtype)
        and value.size > 0
        and value.flags.c_contiguous
        and value.flags.writeable
        and value.ctypes.data % ALIGNMENT == 0
    )


def aligned_copy(value: np.ndarray, dtype: str) -> np.ndarray:
    """``value`` as a new C-contiguous ``dtype`` array in 64-byte aligned memory (numpy's own is 16-byte aligned).

    A transposed view (a torch Linear weight going into paddle's [in, out]) is copied in 128 x 128 tiles, which
    stay in the CPU's cache on both sides: about twice as fast as numpy's element order."""
    target = np.dtype(dtype)
    nbytes = max(value.size, 1) * target.itemsize
    raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    out = raw[start : start + nbytes].view(target)[: value.size].reshape(value.shape)
    if value.ndim < 2 or value.flags.c_contiguous:
        np.copyto(out, value, casting="same_kind")
        return out
    tile = 128
    for index in np.ndindex(*value.shape[:-2]):
        source, destination = value[index], out[index]
        for i in range(0, source.shape[0], tile):
            for j in range(0, source.shape[1], tile):
                np.copyto(destination[i : i + tile, j : j + tile], source[i : i + tile, j : j + tile], "same_kind")
    return out


def _cpu_tensor(value: np.ndarray, dtype: str, share_memory: bool, taken: set[int]) -> Any:
    """A CPU tensor holding ``value``: its own memory where ``share_memory`` allows and it fits, else an aligned
    numpy copy's; None where DLPack cannot carry it (bfloat16, bool, an empty array) or paddle runs on a GPU."""
    if dtype not in _DLPACK_DTYPES or value.size == 0 or value.dtype != np.dtype(dtype):
        return None
    if paddle.device.get_device() != "cpu":
        return None
    share = share_memory and is_shareable(value, dtype) and value.ctypes.data not in taken
    array = value if share else aligned_copy(value, dtype)
    if share:
        taken.add(value.ctypes.data)
    return paddle.utils.dlpack.from_dlpack(array)  # the tensor keeps ``array`` (and what it maps) alive
