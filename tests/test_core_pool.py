"""`WorkerPool.map`: results in item order with worker processes or without, and the input is read lazily;
`on_each_worker` runs once in every worker."""

from __future__ import annotations

import itertools
import math
import os

from churnsense.core.pool import WorkerPool


def test_results_come_back_in_order_and_the_input_is_not_read_ahead():
    read = []

    def items():
        for i in itertools.count():
            read.append(i)
            yield float(i)

    with WorkerPool(2) as pool:
        results = pool.map(math.sqrt, items(), in_flight=3)
        first = [next(results) for _ in range(5)]
        assert first == [math.sqrt(i) for i in range(5)]
        assert len(read) <= 5 + 3  # never more than `in_flight` items handed out ahead of what was consumed
        results.close()
    with WorkerPool(1) as pool:
        assert list(pool.map(math.sqrt, [4.0, 9.0])) == [2.0, 3.0]


def test_on_each_worker_runs_once_in_every_worker_even_one_not_started_yet():
    with WorkerPool(3) as pool:
        assert list(pool.map(math.sqrt, [1.0])) == [1.0]  # one item: not every worker need be running yet
        pids = pool.on_each_worker(os.getpid)
    assert len(set(pids)) == 3 and os.getpid() not in pids
    with WorkerPool(1) as pool:
        assert pool.on_each_worker(os.getpid) == [os.getpid()]
