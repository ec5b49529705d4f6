"""The implicit ALS model: fitting, top-N per user and similar items, in batches."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from recommender.config import AlsParams
from recommender.models.exact_topk import ExactTopK

T = TypeVar("T")
WORKERS = max(1, min(4, os.cpu_count() or 1))


def in_parallel(fn: Callable[[int], T], starts: range, workers: int = WORKERS) -> Iterator[T]:
    """``fn(start)`` for every start, on ``workers`` threads, yielded in order with at most ``workers + 1`` results
    pending. implicit's top-k search releases the GIL but uses one core per call; running batches side by side
    uses the others (numpy's matrix products do the same under a one-thread BLAS), and the bound keeps memory flat
    however many users there are."""
    if workers <= 1:
        yield from map(fn, starts)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for start in starts:
            pending.append(pool.submit(fn, start))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def fit_als(matrix: sp.csr_matrix, params: AlsParams, show_progress: bool = False) -> AlternatingLeastSquares:
    """Fit ALS on a user x item confidence matrix.

    implicit multiplies the matrix by ``alpha`` internally (confidence = 1 + alpha * value) and asks for BLAS to run
    single-threaded because it parallelises itself; we set that with threadpoolctl.
    """
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=params.alpha,
            iterations=params.iterations,
            random_state=params.random_state,
        )
        model.fit(matrix, show_progress=show_progress)
    return model


def recommend_batches(
    model: AlternatingLeastSquares,
    filter_matrix: sp.csr_matrix | None,
    n: int,
    hidden_items: np.ndarray | None = None,
    batch_size: int = 10_000,
    users: np.ndarray | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (user rows, item indices (b x n), scores (b x n)) for every user (or the rows ``users``), batch by batch.

    ``filter_matrix`` rows are the items to leave out per user (None: leave nothing out); ``hidden_items`` are left
    out for everyone. Entries past the available items carry index -1. The search is exact and scores only the
    items that can still make a list (:class:`recommender.models.exact_topk.ExactTopK`).
    """
    chosen = np.arange(model.user_factors.shape[0]) if users is None else np.asarray(users)
    n = min(n, model.item_factors.shape[0])
    search = ExactTopK(model.item_factors, hidden_items)

    def batch(start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = chosen[start : start + batch_size]
        chosen_filter = None
        if filter_matrix is not None:  # a slice is much cheaper than fancy indexing when every user is asked for
            chosen_filter = filter_matrix[start : start + batch_size] if users is None else filter_matrix[rows]
        ids, scores = search.search(model.user_factors[rows], n, chosen_filter)
        return rows, ids, scores

    with threadpool_limits(1, "blas"):
        yield from in_parallel(batch, range(0, len(chosen), batch_size))


def similar_batches(
    model: AlternatingLeastSquares,
    n: int,
    hidden_items: np.ndarray | None = None,
    batch_size: int = 5_000,
    items: np.ndarray | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (item indices, similar item indices (b x n), cosine scores) for every item (or the columns ``items``);
    an item is not its own neighbour."""
    n_items = model.item_factors.shape[0]
    chosen = np.arange(n_items) if items is None else np.asarray(items, dtype=np.int64)
    hidden = hidden_items if hidden_items is not None and len(hidden_items) else None

    def batch(start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return similar_rows(model, chosen[start : start + batch_size], n, hidden)

    with threadpool_limits(1, "blas"):
        yield from in_parallel(batch, range(0, len(chosen), batch_size))


def similar_rows(
    model: AlternatingLeastSquares, rows: np.ndarray, n: int, hidden: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One batch of :func:`similar_batches` (in this thread): (``rows``, similar item indices, cosine scores)."""
    k = min(n + 1, model.item_factors.shape[0])
    ids, scores = model.similar_items(rows, N=k, filter_items=hidden)
    ids, scores = np.atleast_2d(ids), np.atleast_2d(scores)
    self_hit = ids == rows[:, None]
    # Drop the item itself from its own row, keep the first n others.
    order = np.argsort(self_hit, axis=1, kind="stable")
    ids = np.take_along_axis(ids, order, axis=1)[:, :n]
    scores = np.take_along_axis(scores, order, axis=1)[:, :n]
    scores = np.where(np.take_along_axis(self_hit, order, axis=1)[:, :n], -np.inf, scores)
    return rows, ids, scores
