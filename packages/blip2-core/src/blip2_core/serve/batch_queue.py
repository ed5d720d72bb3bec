"""Concurrent requests grouped into batches for one model worker: a bounded queue, a max batch size, a max wait.

Requests put jobs on the queue and wait on a future; one worker thread (the model is not thread-safe, and one
batched pass beats several small ones on any device) takes the first job, waits at most ``max_wait`` seconds
for more, runs each group of jobs that share a key (the same task and settings) as one call and resolves the
futures. A full queue refuses at once (``QueueFullError``) instead of letting clients wait without bound.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

RunBatch = Callable[[Hashable, Sequence[Any]], Sequence[Any]]


class QueueFullError(Exception):
    """The queue holds ``max_queue`` jobs already; try again after ``retry_after`` seconds."""

    def __init__(self, max_queue: int, retry_after: int) -> None:
        super().__init__(f"the server is busy ({max_queue} requests waiting): retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class _Job:
    key: Hashable
    item: Any
    future: Future = field(default_factory=Future)


class BatchQueue:
    """``submit(key, item)`` -> a future of ``run_batch(key, items)[i]`` for that item."""

    def __init__(
        self, run_batch: RunBatch, *, max_batch_size: int = 8, max_wait: float = 0.01, max_queue: int = 64
    ) -> None:
        if max_batch_size < 1 or max_queue < 1 or max_wait < 0:
            raise ValueError("max_batch_size and max_queue must be >= 1, max_wait >= 0")
        self.run_batch = run_batch
        self.max_batch_size, self.max_wait, self.max_queue = max_batch_size, max_wait, max_queue
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self.batches_run = 0  # model calls, for /healthz and the tests
        self.items_run = 0
        self._seconds_per_batch = 0.0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="blip2-batch-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            try:
                self._queue.put(None, timeout=timeout)  # after the jobs already waiting
            except queue.Full:
                pass  # a worker stuck in a model call: it is a daemon thread, and the process is ending
            self._thread.join(timeout)
            self._thread = None

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def submit(self, key: Hashable, item: Any) -> Future:
        job = _Job(key, item)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFullError(self.max_queue, self.retry_after()) from None
        return job.future

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained (at least 1)."""
        batches = math.ceil(self.max_queue / self.max_batch_size)
        return max(1, math.ceil(batches * self._seconds_per_batch))

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            deadline = time.monotonic() + self.max_wait
            while len(jobs) < self.max_batch_size:
                try:
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:  # stop after this batch
                    self._queue.put(None)
                    break
                jobs.append(job)
            for group in _groups(jobs):
                self._run(group)

    def _run(self, jobs: list[_Job]) -> None:
        jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]  # clients gone: skip
        if not jobs:
            return
        started = time.monotonic()
        outcomes = self._outcomes(jobs)
        elapsed = time.monotonic() - started
        self.batches_run += 1
        self.items_run += len(jobs)
        self._seconds_per_batch = 0.8 * self._seconds_per_batch + 0.2 * elapsed if self.batches_run > 1 else elapsed
        for job, (ok, value) in zip(jobs, outcomes):
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)

    def _outcomes(self, jobs: list[_Job]) -> list[tuple[bool, Any]]:
        """(True, result) or (False, the exception) for each job."""
        try:
            results = self.run_batch(jobs[0].key, [job.item for job in jobs])
            if len(results) != len(jobs):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(jobs)} items")
            return [(True, result) for result in results]
        except Exception as error:  # nothing may stop the worker: every waiting client would hang
            if len(jobs) == 1:
                return [(False, error)]
            # one item's failure must not fail the others: each alone, each with its own outcome
            return [self._outcomes([job])[0] for job in jobs]


def _groups(jobs: list[_Job]) -> list[list[_Job]]:
    """Jobs with the same key together, in the order their first job came."""
    groups: dict[Hashable, list[_Job]] = {}
    for job in jobs:
        groups.setdefault(job.key, []).append(job)
    return list(groups.values())
