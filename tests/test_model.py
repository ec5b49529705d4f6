"""Batch helpers of the ALS model: parallel batches keep their order and a bounded number in flight."""

import threading
import time

from recommender.model import in_parallel


def test_in_parallel_keeps_order_and_bounds_pending_work():
    started: list[int] = []
    lock = threading.Lock()

    def work(start: int) -> int:
        with lock:
            started.append(start)
        time.sleep(0.001 * (start % 3))  # finish out of order
        return start * 10

    results = []
    for value in in_parallel(work, range(0, 40, 2), workers=2):
        with lock:
            in_flight = len(started) - len(results) - 1
        assert in_flight <= 2  # never more than workers + 1 batches computed ahead of the consumer
        results.append(value)
    assert results == [s * 10 for s in range(0, 40, 2)]


def test_in_parallel_with_one_worker_is_plain_map():
    assert list(in_parallel(lambda s: s + 1, range(5), workers=1)) == [1, 2, 3, 4, 5]
