"""Paddle's CPU thread count: ``use_all_cores``, decided once per process, on request, never on import.

Paddle runs its CPU math on one thread, and importing paddle sets OMP_NUM_THREADS=1 when it is unset, so after
that import a "1" no longer tells what the user chose. This module reads the variable when it is imported, and
imports paddle only inside ``use_all_cores``; the package's ``__init__`` imports it before any module that
imports paddle. Where paddle came first (the user imported it before us), a "1" is checked against the
environment the process started with (/proc/self/environ), which no import can change.
"""

from __future__ import annotations

import os
import sys

# Read now, before this package imports paddle: see the module's docstring.
_PADDLE_CAME_FIRST = "paddle.base" in sys.modules
_OMP_BEFORE_PADDLE = None if _PADDLE_CAME_FIRST else os.environ.get("OMP_NUM_THREADS")


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

    The first call stores its answer in BLIP2_NUM_THREADS, so that later calls (through whichever package) agree.
    On AMD processors it also sets MKL_DEBUG_CPU_TYPE=5 unless you set it: the MKL inside paddle's wheel
    otherwise takes a generic path there (2.4x slower fp32 matmuls, measured on an AMD EPYC). MKL reads it at
    its first call, so call this before the first computation. Our command-line tools call it at start-up; a
    library user calls it once, or keeps paddle's settings.
    """
    if cpu_vendor() == "AuthenticAMD":
        os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")
    threads = thread_count(user_omp_threads=user_omp_threads())
    os.environ["BLIP2_NUM_THREADS"] = str(threads)
    from ._paddle import paddle  # here: this module is read before paddle is imported, and must stay so

    paddle.base.core.set_num_threads(threads)  # paddle 3 has no public call for the CPU thread count
    return threads
