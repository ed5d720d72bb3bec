"""Two lanes of recipe steps side by side, one core each.

The recipe's models are small: in a one-off check (AMD EPYC, 2 cores; one run each, not a benchmark) a step of
stage 1, of the LM and of the ViT ran about as fast on one thread as on two. Two steps side by side, one thread
each, then take about the time of one, so the recipe runs two lanes of steps at once. A lane is a Python thread; the project's commands run
in processes of their own (``recipe.run(..., threads=1)``), the in-process training loops in one of two worker
processes started here with one thread each. A lane that needs another's result waits for it by name.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def _one_thread() -> None:
    """A worker's start: paddle's kernels on one thread (and MKL's fast path on AMD, as every tool sets it)."""
    os.environ["BLIP2_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = "1"
    from blip2_eva_vit import use_all_cores

    use_all_cores()


class OtherLaneFailed(RuntimeError):
    """Raised in a lane that waited for a result the failed lane was to give."""


class Lanes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, threading.Event] = {}
        self._values: dict[str, Any] = {}
        self._failures: list[BaseException] = []
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Lanes:
        context = multiprocessing.get_context("spawn")  # a fork would copy this process' paddle threads
        self._pool = ProcessPoolExecutor(max_workers=2, mp_context=context, initializer=_one_thread)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._pool is not None
        self._pool.shutdown(cancel_futures=True)

    def in_worker(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``function(*args, **kwargs)`` in a one-thread worker process (arguments and result are pickled)."""
        assert self._pool is not None, "use Lanes as a context manager"
        return self._pool.submit(function, *args, **kwargs).result()

    def _event(self, name: str) -> threading.Event:
        with self._lock:
            return self._events.setdefault(name, threading.Event())

    def done(self, name: str, value: Any = None) -> None:
        self._values[name] = value
        self._event(name).set()

    def wait(self, name: str) -> Any:
        """The value ``done(name, value)`` gave; raises ``OtherLaneFailed`` if a lane failed meanwhile."""
        event = self._event(name)
        while not event.wait(0.5):
            if self._failures:
                raise OtherLaneFailed(f"a lane failed before {name!r} was ready")
        return self._values[name]

    def start(self, *lanes: Callable[[], None]) -> None:
        """Run the lanes side by side until all end; the first failure (not a wait it caused) is raised."""

        def run(lane: Callable[[], None]) -> None:
            try:
                lane()
            except BaseException as error:  # noqa: BLE001 - handed to the caller below
                self._failures.append(error)

        threads = [threading.Thread(target=run, args=(lane,), name=lane.__name__) for lane in lanes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self._failures:
            causes = [error for error in self._failures if not isinstance(error, OtherLaneFailed)]
            raise (causes or self._failures)[0]
