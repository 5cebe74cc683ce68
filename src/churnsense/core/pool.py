"""An ordered, bounded map over worker processes: the one way batch jobs spread work over the cores.

Results come back in the order of the items, so a job's output is the same whatever the number of workers. At most
`in_flight` items are handed out at a time, so an input read lazily (chunks of a file) is never read ahead into
memory. Workers are spawned (never forked from a process holding ONNX Runtime or Arrow thread pools).
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    in_flight: int = 0,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple = (),
) -> Iterator[R]:
    """`fn(item)` for every item, in order: in this process with `workers` 1 (after `initializer(*initargs)`), else
    in that many spawned processes, each started with `initializer(*initargs)`; at most `in_flight` (default: two
    per worker) items submitted and not yet consumed. `fn` must be importable (a module-level function)."""
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(fn, items)
        return
    limit = max(1, int(in_flight) or 2 * workers)
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=initializer, initargs=initargs)
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= limit:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # a failed run does not wait for the items still queued
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
