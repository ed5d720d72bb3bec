"""The few pieces both encoders need. This file is the same in blip2-eva-vit and blip2-qformer, which each
install alone and import nothing of ours; blip2-core's tests fail if the two copies differ.

- ``LayerNormFp32``: LayerNorm statistics in float32 whatever the input dtype (fp16 ones overflow).
- ``LoadReport`` and ``assign_weights``: the shape-checked loop that puts converted weights into a model.
- ``config_from_dict``: a config dataclass from its own keys, refusing unknown ones.
- ``use_all_cores``: paddle's CPU thread count, decided once per process, on request, never on import.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from typing import Any, TypeVar

# Read before paddle is imported (just below), which sets OMP_NUM_THREADS=1 when it is unset: see use_all_cores.
_PADDLE_CAME_FIRST = "paddle.base" in sys.modules
_OMP_BEFORE_PADDLE = None if _PADDLE_CAME_FIRST else os.environ.get("OMP_NUM_THREADS")

import numpy as np  # noqa: E402

try:
    import paddle
except ModuleNotFoundError as error:  # say what to install instead of a bare "No module named 'paddle'"
    if error.name != "paddle":
        raise
    _PIP_NAME = __name__.partition(".")[0].replace("_", "-")
    raise ModuleNotFoundError(
        f"{_PIP_NAME} needs PaddlePaddle, which is not installed: pip install '{_PIP_NAME}[cpu]' (or pip install "
        f"paddlepaddle) for the CPU build; for a GPU, pip install paddlepaddle-gpu (pick the CUDA build on "
        f"paddlepaddle.org.cn)",
        name="paddle",
    ) from None
from paddle import nn  # noqa: E402

logger = logging.getLogger(__name__)

ConfigT = TypeVar("ConfigT")


class LayerNormFp32(nn.LayerNorm):
    """LayerNorm that computes in float32 whatever the input dtype (fp16 statistics overflow)."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if x.dtype == paddle.float32:
            return super().forward(x)
        return super().forward(x.astype(paddle.float32)).astype(x.dtype)


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
    """
    params = model.state_dict()
    dtypes = dtypes or {}
    report = LoadReport()
    loaded = set()
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


def config_from_dict(cls: type[ConfigT], values: dict[str, Any]) -> ConfigT:
    """``cls(**values)``; unknown keys are an error, so that a typo is not silently dropped."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {unknown} (known: {sorted(names)})")
    return cls(**values)


# ------------------------------------------------------------------------------------------------ CPU threads
# Paddle runs its CPU math on one thread, and importing paddle sets OMP_NUM_THREADS=1 when it is unset, so after
# that import a "1" no longer tells what the user chose. This module reads the variable before importing paddle;
# where paddle came first, a "1" is checked against the environment the process started with
# (/proc/self/environ), which no import can change.


def _starting_environment() -> dict[str, str] | None:
    """The environment this process was started with, or None where the platform does not expose it."""
    try:
        with open("/proc/self/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key.decode(errors="replace"): value.decode(errors="replace") for key, value in pairs}


def user_omp_threads() -> str | None:
    """OMP_NUM_THREADS as the user set it, not as paddle's import rewrote it."""
    if not _PADDLE_CAME_FIRST:
        return _OMP_BEFORE_PADDLE
    value = os.environ.get("OMP_NUM_THREADS")
    if value != "1":  # paddle writes only "1" (when unset) or the user's own number back
        return value
    starting = _starting_environment()
    return None if starting is None else starting.get("OMP_NUM_THREADS")


def thread_count(environ: dict[str, str] | None = None, user_omp_threads: str | None = None) -> int:
    """BLIP2_NUM_THREADS, else the user's OMP_NUM_THREADS, else every core this process may run on."""
    environ = os.environ if environ is None else environ
    chosen = environ.get("BLIP2_NUM_THREADS") or user_omp_threads
    if chosen:
        try:
            return max(1, int(chosen))
        except ValueError:
            raise ValueError(f"BLIP2_NUM_THREADS / OMP_NUM_THREADS must be a whole number, got {chosen!r}") from None
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else (os.cpu_count() or 1)


def cpu_vendor() -> str | None:
    """``vendor_id`` of /proc/cpuinfo ("AuthenticAMD", "GenuineIntel"), or None where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return None


def use_all_cores() -> int:
    """Give paddle's CPU kernels ``thread_count()`` threads, the same count for the whole process; returns it.

    The first call stores its answer in BLIP2_NUM_THREADS, so that later calls (from either package) agree.
    On AMD processors it also sets MKL_DEBUG_CPU_TYPE=5 unless you set it: the MKL inside paddle's wheel
    otherwise takes a generic path there (2.4x slower fp32 matmuls, measured on an AMD EPYC). MKL reads it at
    its first call, so call this before the first computation. Our command-line tools call it at start-up; a
    library user calls it once, or keeps paddle's settings.
    """
    if cpu_vendor() == "AuthenticAMD":
        os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")
    threads = thread_count(user_omp_threads=user_omp_threads())
    os.environ["BLIP2_NUM_THREADS"] = str(threads)
    paddle.base.core.set_num_threads(threads)  # paddle 3 has no public call for the CPU thread count
    return threads
