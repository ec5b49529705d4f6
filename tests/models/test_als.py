"""Batch helpers of the ALS model: parallel batches keep their order and a bounded number in flight."""

import threading
import time

import numpy as np
import scipy.sparse as sp

from recommender.config import AlsParams
from recommender.models.als import fit_als, in_parallel, recommend_batches


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


def test_batches_give_implicit_s_own_lists():
    matrix = sp.random(300, 2000, density=0.02, format="csr", dtype=np.float32, random_state=4)
    model = fit_als(matrix, AlsParams(factors=8, iterations=3))
    hidden = np.array([3, 50, 1999])
    rows, ids, scores = zip(*recommend_batches(model, matrix, 20, hidden, batch_size=64))
    ids, scores = np.vstack(ids), np.vstack(scores)
    assert np.concatenate(rows).tolist() == list(range(300))
    want_ids, want_scores = model.recommend(
        np.arange(300), matrix, N=20, filter_already_liked_items=True, filter_items=hidden
    )
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)
    same = (ids == want_ids).mean()
    assert same > 0.99  # the rest are ties or float32 rounding of near-equal scores, ranked in float64 here
