"""Batch helpers of the ALS model: parallel batches keep their order and a bounded number in flight."""

import threading
import time

import numpy as np
import scipy.sparse as sp

from recommender.config import AlsParams
from recommender.models.als import fit_als, in_parallel, row_filter


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


def test_row_filter_gives_the_same_rows_and_the_same_top_k():
    matrix = sp.random(300, 80, density=0.05, format="csr", dtype=np.float32, random_state=4)
    fast = row_filter(matrix)
    assert isinstance(fast, sp.csr_matrix) and fast.shape == matrix.shape
    assert all(np.array_equal(fast[i].indices, matrix[i].indices) for i in range(300))
    assert (fast[10:20] != matrix[10:20]).nnz == 0
    model = fit_als(matrix, AlsParams(factors=8, iterations=3))
    rows = np.arange(300)
    want = model.recommend(rows, matrix, N=20, filter_already_liked_items=True)
    got = model.recommend(rows, fast, N=20, filter_already_liked_items=True)
    assert np.array_equal(want[0], got[0]) and np.array_equal(want[1], got[1])
