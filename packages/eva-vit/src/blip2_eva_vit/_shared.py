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


def assign_weights(model: nn.Layer, weights: dict[str, Any], source: str | None = None) -> LoadReport:
    """Set every parameter of ``model`` named in ``weights`` (already in our names, as numpy arrays).

    A scalar saved as shape [] or [1] fits either; any other shape mismatch is an error naming the key and
    both shapes. Names the model lacks are reported as ``unexpected``, parameters left unset as ``missing``.
    """
    params = model.state_dict()
    report = LoadReport()
    for key, value in weights.items():
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
        target.set_value(paddle.to_tensor(value.astype(np.float32)).astype(target.dtype))
    report.missing = sorted(set(params) - set(weights))
    return report


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
