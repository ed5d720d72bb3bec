"""Paddle's CPU math library runs on one thread unless told otherwise.

Importing paddle also sets ``OMP_NUM_THREADS=1`` when it is unset, so that variable tells what the user
chose only if it is read before paddle is imported: this module is imported first for that reason.
"""

from __future__ import annotations

import os
import sys

# None when paddle came first: then OMP_NUM_THREADS may be paddle's own "1", not the user's choice.
_USER_OMP_THREADS = None if "paddle" in sys.modules else os.environ.get("OMP_NUM_THREADS")


def thread_count(environ: dict[str, str] | None = None, user_omp_threads: str | None = None) -> int:
    """BLIP2_NUM_THREADS, else the user's OMP_NUM_THREADS, else every core this process may run on."""
    environ = os.environ if environ is None else environ
    chosen = environ.get("BLIP2_NUM_THREADS") or user_omp_threads
    if chosen:
        return max(1, int(chosen))
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else (os.cpu_count() or 1)


def use_all_cores() -> int:
    """Give paddle's CPU kernels ``thread_count()`` threads; returns the count."""
    import paddle

    threads = thread_count(user_omp_threads=_USER_OMP_THREADS)
    paddle.base.core.set_num_threads(threads)
    return threads
