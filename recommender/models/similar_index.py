"""Similar items without scoring every pair: an inverted-file index (faiss IVFFlat) over the normalised item factors.

The exact path (:func:`recommender.models.als.similar_batches`) scores items x items pairs, which grows with the
square of the catalogue. Here k-means splits the items into ``4 * sqrt(items)`` cells; each item is compared only
with the items of the ``nprobe`` (64) cells nearest to it, with exact cosines: about 5% of the pairs at 100,000
items, fewer the larger the catalogue. (A coarser index, sqrt(items) cells and nprobe 16, was faster but measured
recall@10 0.94 on complete-journey, under the 0.95 asked for.) faiss-cpu was measured against hnswlib and
faiss's HNSW on both benchmark data sets (``bench/similar_index.py``, docs/PERFORMANCE.md); faiss ships binary
wheels (hnswlib builds from source).
Unavailable items are not in the index, so they are never anyone's neighbour; they still get their own list.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from recommender.models.als import WORKERS

NPROBE = 64
KMEANS_ITERATIONS = 10
"""k-means iterations when the cells are learnt (faiss's default is 25). Training was the larger part of the index's
cost; with 10, recall@10 against the exact lists (ties counted, 2,000 sampled items) stayed 0.990 on
complete-journey's factors and 0.999 on the 1M-event generated shop's, the same as with 25, at under half the
training time."""


def _normalised(factors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(factors, axis=1, keepdims=True)
    return np.ascontiguousarray(factors / np.maximum(norms, 1e-12), dtype=np.float32)


def similar_batches_ivf(
    item_factors: np.ndarray,
    n: int,
    hidden_items: np.ndarray | None = None,
    batch_size: int = 20_000,
    nprobe: int = NPROBE,
    queries: np.ndarray | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (item indices, similar item indices (b x n), cosine scores) for every item (or the rows ``queries``),
    like ``similar_batches``; entries the index could not fill carry index -1. Every item is in the index
    whichever are asked for."""
    import faiss  # imported here: only large catalogues need it

    faiss.omp_set_num_threads(WORKERS)
    x = _normalised(item_factors)
    keep = np.ones(len(x), dtype=bool)
    if hidden_items is not None and len(hidden_items):
        keep[hidden_items] = False
    ids = np.flatnonzero(keep).astype(np.int64)
    nlist = max(1, min(int(4 * np.sqrt(len(ids))), len(ids) // 39))  # faiss wants >= 39 training points per cell
    quantizer = faiss.IndexFlatIP(x.shape[1])
    index = faiss.IndexIVFFlat(quantizer, x.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = KMEANS_ITERATIONS
    index.train(x[ids])
    index.add_with_ids(x[ids], ids)
    index.nprobe = min(nprobe, nlist)
    k = min(n + 1, len(ids))
    chosen = np.arange(len(x)) if queries is None else np.asarray(queries, dtype=np.int64)
    for start in range(0, len(chosen), batch_size):
        rows = chosen[start : start + batch_size]
        scores, found = index.search(x[rows], k)
        self_hit = found == rows[:, None]
        order = np.argsort(self_hit, axis=1, kind="stable")  # the item itself last, the others in their order
        found = np.take_along_axis(found, order, axis=1)[:, :n]
        scores = np.take_along_axis(scores, order, axis=1)[:, :n]
        dropped = np.take_along_axis(self_hit, order, axis=1)[:, :n] | (found < 0)
        yield rows, np.where(dropped, -1, found), np.where(dropped, -np.inf, scores)
