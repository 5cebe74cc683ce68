"""Worker processes for a batch job: one pool for every stage of a run, with an ordered, bounded map.

`WorkerPool.map` returns results in the order of the items, so a job's output is the same whatever the number of
workers; at most `in_flight` items are handed out at a time, so an input read lazily (chunks of a file) is never
read ahead into memory. Workers are spawned (never forked from a process holding ONNX Runtime or Arrow thread
pools) and started once per run: a run's stages (validating chunks, scoring partitions) share them, so the
interpreter start and imports are paid once. `on_each_worker` runs a function once in every worker (e.g. to close
what a stage left open there).
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
BARRIER_TIMEOUT_S = 600.0  # `on_each_worker`: how long a worker waits for the others to take their call

_BARRIER: Any = None  # in a worker: the pool's barrier (every worker takes exactly one `on_each_worker` call)


def _start(barrier: Any, initializer: Callable[..., Any] | None, initargs: tuple) -> None:
    global _BARRIER
    _BARRIER = barrier
    if initializer is not None:
        initializer(*initargs)


def _once_here(fn: Callable[..., R], args: tuple) -> R:
    """`fn(*args)` after every worker has taken one such call: a worker waiting here takes no other."""
    _BARRIER.wait(BARRIER_TIMEOUT_S)
    return fn(*args)


class WorkerPool:
    """`workers` spawned processes, each started with `initializer(*initargs)`; with `workers` 1, this process
    does the work itself (the initializer prepares worker processes only)."""

    def __init__(self, workers: int, initializer: Callable[..., Any] | None = None, initargs: tuple = ()) -> None:
        self.workers = max(1, int(workers))
        self._initializer, self._initargs = initializer, initargs
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> WorkerPool:
        if self.workers > 1:
            context = multiprocessing.get_context("spawn")
            barrier = context.Barrier(self.workers)
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=context,
                initializer=_start,
                initargs=(barrier, self._initializer, self._initargs),
            )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._pool is not None:  # a failed run does not wait for the items still queued
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def on_each_worker(self, fn: Callable[..., R], *args: Any) -> list[R]:
        """`fn(*args)` once in every worker process (in this process when it does the work itself), e.g. to close
        files a stage left open in each; `fn` must be importable."""
        if self._pool is None:
            return [fn(*args)]
        futures = [self._pool.submit(_once_here, fn, args) for _ in range(self.workers)]
        return [future.result() for future in futures]

    def map(self, fn: Callable[[T], R], items: Iterable[T], in_flight: int = 0) -> Iterator[R]:
        """`fn(item)` for every item, in order; at most `in_flight` (default: two per worker) items submitted and
        not yet consumed. `fn` must be importable (a module-level function)."""
        if self._pool is None:
            yield from map(fn, items)
            return
        limit = max(1, int(in_flight) or 2 * self.workers)
        pending: deque[Future] = deque()
        try:
            for item in items:
                pending.append(self._pool.submit(fn, item))
                if len(pending) >= limit:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
