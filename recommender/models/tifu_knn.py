"""TIFU-KNN: personalised item frequency with time decay, blended with the nearest customers' (Hu et al., SIGIR 2020).

Each customer is a vector over items built from their baskets (orders), oldest first:

* basket ``p`` of ``n`` is the binary vector of its items, weighted ``within_decay ** (n - 1 - p)``;
* the baskets are cut into ``G = min(n, group_size)`` consecutive groups (sizes ``n // G``, the last ``n % G``
  groups one basket longer); a group's vector is the mean of its weighted baskets;
* the customer vector is ``sum_g group_decay ** (group_size - 1 - g) * group_g / G``.

A customer's score for an item is ``alpha * own vector + (1 - alpha) * mean vector of the k nearest other
customers`` (Euclidean distance between customer vectors, or cosine with ``metric="cosine"``).

This follows the authors' reference implementation where it differs from the paper's text: the within-basket
decay counts from the newest basket over the whole history (not within each group), the group decay exponent
counts from ``group_size`` even when a customer has fewer baskets than that (a short history weighs less against
the neighbours), and neighbours are found by Euclidean distance (the reference uses sklearn's ``NearestNeighbors``
default, an exact brute-force search, which :class:`NeighbourIndex` computes the same way). The
customer is never their own neighbour. Written with numpy/scipy on sparse matrices (the reference loops over
customers in Python) so a shop with tens of thousands of customers scores in seconds.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from recommender.data.schema import PURCHASE
from recommender.evaluation.split import order_keys


@dataclass(frozen=True)
class TifuParams:
    """TIFU-KNN's five parameters (and the distance of the neighbour search)."""

    group_size: int = 7
    within_decay: float = 0.9
    group_decay: float = 0.7
    k: int = 300
    alpha: float = 0.7
    metric: Literal["euclidean", "cosine"] = "euclidean"

    def __post_init__(self) -> None:
        if self.group_size < 1 or self.k < 1:
            raise ValueError(f"group_size and k must be positive, got {self.group_size} and {self.k}")
        for name in ("within_decay", "group_decay", "alpha"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PUBLISHED: dict[str, TifuParams] = {
    "tafeng": TifuParams(group_size=7, within_decay=0.9, group_decay=0.7, k=300, alpha=0.7),
    "dunnhumby": TifuParams(group_size=3, within_decay=0.9, group_decay=0.6, k=800, alpha=0.9),
}
"""The paper's published settings: Ta-Feng (a grocery chain) and Dunnhumby (grocery households)."""


def _baskets(train: pa.Table) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Distinct (user code, item code, basket position, user's basket count) rows of the purchases (position 0 =
    the oldest basket), with the sorted user and item ids the codes index. The rows come in that order: an item's
    weights are summed in float32 in the order they arrive, and the engine's parallel order varied the last bit."""
    rows = train.filter(pc.equal(train["event_type"], PURCHASE))
    rows = rows.select(["user_id", "item_id", "timestamp"]).append_column("basket", order_keys(rows))
    con = duckdb.connect()
    con.register("p", rows)
    con.execute(
        "CREATE TEMP TABLE u AS SELECT user_id, row_number() OVER (ORDER BY user_id) - 1 AS ucode "
        "FROM (SELECT DISTINCT user_id FROM p)"
    )
    con.execute(
        "CREATE TEMP TABLE i AS SELECT item_id, row_number() OVER (ORDER BY item_id) - 1 AS icode "
        "FROM (SELECT DISTINCT item_id FROM p)"
    )
    codes = con.sql(
        """
        WITH b AS (SELECT user_id, basket, min(timestamp) AS t FROM p GROUP BY user_id, basket),
        pos AS (SELECT user_id, basket, row_number() OVER (PARTITION BY user_id ORDER BY t, basket) - 1 AS pos,
                       count(*) OVER (PARTITION BY user_id) AS n FROM b)
        SELECT DISTINCT u.ucode, i.icode, pos.pos, pos.n
        FROM p JOIN pos USING (user_id, basket) JOIN u USING (user_id) JOIN i USING (item_id)
        ORDER BY u.ucode, i.icode, pos.pos
        """
    ).fetchnumpy()
    users = con.sql("SELECT user_id FROM u ORDER BY ucode").fetchnumpy()["user_id"]
    items = con.sql("SELECT item_id FROM i ORDER BY icode").fetchnumpy()["item_id"]
    return codes, np.asarray(users, dtype=object), np.asarray(items, dtype=object)


def basket_weights(pos: np.ndarray, n: np.ndarray, params: TifuParams) -> np.ndarray:
    """Weight of an item in the basket at position ``pos`` (0 = oldest) of a user with ``n`` baskets."""
    pos, n = pos.astype(np.int64), n.astype(np.int64)
    groups = np.minimum(n, params.group_size)
    base = n // groups
    extra = n - base * groups  # the last ``extra`` groups hold one basket more
    short_groups = groups - extra
    in_short = pos < short_groups * base
    group = np.where(in_short, pos // np.maximum(base, 1), short_groups + (pos - short_groups * base) // (base + 1))
    size = np.where(in_short, base, base + 1)
    within = np.power(params.within_decay, (n - 1 - pos).astype(np.float64))
    across = np.power(params.group_decay, (params.group_size - 1 - group).astype(np.float64))
    return within * across / (size * groups)


@dataclass
class TifuVectors:
    """Customer vectors (rows ``user_ids``, columns ``item_ids``, both sorted; see :meth:`TifuKnn.in_columns` for
    other columns) of one training log."""

    matrix: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray

    @classmethod
    def build(cls, train: pa.Table, params: TifuParams) -> TifuVectors:
        rows, users, items = _baskets(train)
        weights = basket_weights(rows["pos"], rows["n"], params)
        matrix = sp.csr_matrix(
            (weights.astype(np.float32), (rows["ucode"].astype(np.int64), rows["icode"].astype(np.int64))),
            shape=(len(users), len(items)),
        )
        matrix.sum_duplicates()
        return cls(matrix, users, items)


class NeighbourIndex:
    """Exact brute-force nearest-neighbour search among the rows of a sparse matrix, as the reference does; cosine is
    the Euclidean distance between unit rows (the same order).

    Written here rather than taken from scikit-learn's ``NearestNeighbors(algorithm="brute")``: it is the same
    computation (squared distances ``|q|^2 + |p|^2 - 2 q.p`` over blocks of queries, then a partial sort) in a few
    lines of scipy, and it keeps scikit-learn (about 50 MB) out of the service image.

    ``pool`` (row numbers) restricts the candidates to those rows, e.g. a fixed random sample of a shop with
    millions of customers: the search costs queries x pool, and the mean of 300 neighbours among 50,000 customers
    is about that among all of them.
    """

    BLOCK = 512
    """Queries per block: a block's distances are a dense BLOCK x pool array (100 MB at a pool of 50,000)."""

    def __init__(self, matrix: sp.csr_matrix, metric: str = "euclidean", pool: np.ndarray | None = None) -> None:
        if metric not in ("euclidean", "cosine"):
            raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
        data = sp.csr_matrix(matrix, dtype=np.float64)
        if metric == "cosine":
            norms = np.sqrt(np.asarray(data.multiply(data).sum(axis=1)).ravel())
            data = sp.csr_matrix(sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ data)
        self.data = data
        self.pool = np.arange(matrix.shape[0]) if pool is None else np.sort(pool)
        self.size = len(self.pool)
        self._pooled = sp.csr_matrix(data[self.pool].T)
        self._pool_sq = np.asarray(data[self.pool].multiply(data[self.pool]).sum(axis=1)).ravel()

    def query(self, rows: np.ndarray, k: int) -> np.ndarray:
        """The ``k`` nearest *other* rows for each of ``rows`` (fewer when there are fewer rows), nearest first."""
        k = min(k, self.size - 1)
        if k <= 0:
            return np.zeros((len(rows), 0), dtype=np.int64)
        found = np.vstack([self._nearest(rows[i : i + self.BLOCK], k + 1) for i in range(0, len(rows), self.BLOCK)])
        is_self = found == rows[:, None]
        # drop the row itself (or the farthest when an identical row took its place), keep the order
        drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
        keep = np.ones_like(found, dtype=bool)
        keep[np.arange(len(rows)), drop] = False
        return found[keep].reshape(len(rows), k)

    def _nearest(self, rows: np.ndarray, k: int) -> np.ndarray:
        """Pool row numbers of the ``k`` nearest pool rows to each of ``rows``, nearest first (ties by row number)."""
        queries = self.data[rows]
        query_sq = np.asarray(queries.multiply(queries).sum(axis=1)).ravel()
        dist = (queries @ self._pooled).toarray()
        dist *= -2.0
        dist += query_sq[:, None]
        dist += self._pool_sq[None, :]
        np.maximum(dist, 0.0, out=dist)
        part = (
            np.argpartition(dist, k - 1, axis=1)[:, :k]
            if k < self.size
            else np.tile(np.arange(self.size), (len(rows), 1))
        )
        part.sort(axis=1)  # ties resolved by row number, independent of argpartition's order
        order = np.argsort(np.take_along_axis(dist, part, axis=1), axis=1, kind="stable")
        return self.pool[np.take_along_axis(part, order, axis=1)]


MAX_POOL = 50_000
"""Customers a neighbour is looked for among, at most (a fixed random sample beyond; see :class:`NeighbourIndex`)."""


class TifuKnn:
    """TIFU-KNN fitted on a training log: scores and top-n lists for its customers (neighbours among at most
    ``max_pool`` customers, None: all)."""

    def __init__(self, params: TifuParams | None = None, max_pool: int | None = MAX_POOL) -> None:
        self.params = params or TifuParams()
        self.max_pool = max_pool
        self.vectors: TifuVectors | None = None
        self._index: dict[str, int] = {}
        self._neighbours: NeighbourIndex | None = None

    def fit(self, train: pa.Table) -> TifuKnn:
        self.vectors = TifuVectors.build(train, self.params)
        self._neighbours = None
        self._index = {u: i for i, u in enumerate(self.vectors.user_ids.tolist())}
        return self

    @property
    def item_ids(self) -> np.ndarray:
        assert self.vectors is not None, "TifuKnn is not fitted"
        return self.vectors.item_ids

    def rows(self, users: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """Users with a purchase in the training log and their rows."""
        known = [u for u in users if u in self._index]
        return known, np.array([self._index[u] for u in known], dtype=np.int64)

    def score_batches(self, users: Sequence[str], batch_size: int = 512) -> Iterator[tuple[list[str], sp.csr_matrix]]:
        """(users, sparse scores over :attr:`item_ids`) batch by batch, for the known users among ``users`` (sparse:
        a customer and their neighbours bought a small part of a large catalogue)."""
        assert self.vectors is not None, "TifuKnn is not fitted"
        known, rows = self.rows(users)
        matrix, p = self.vectors.matrix, self.params
        index = self._neighbour_index()
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            scores = matrix[batch]
            neighbours = index.query(batch, p.k)
            if neighbours.shape[1]:
                scores = p.alpha * scores + (1 - p.alpha) * (_row_means(neighbours, matrix.shape[0]) @ matrix)
            yield known[start : start + len(batch)], sp.csr_matrix(scores)

    def dense_scores(self, users: Sequence[str], out: np.ndarray | None = None) -> tuple[list[str], np.ndarray]:
        """The scores of :meth:`score_batches` for the known users among ``users``, in one dense float32 array over
        :attr:`item_ids` (written to ``out`` when given, shaped for the known users): the same values to float32
        rounding (:func:`neighbour_means` may sum the neighbours in another order), zero where the sparse scores
        store nothing.

        For a batch whose rows are mostly non-zero (a few thousand customers, each with hundreds of neighbours): a
        dense array costs less than the sparse sum and row sort of millions of entries, and reads by index."""
        assert self.vectors is not None, "TifuKnn is not fitted"
        known, rows = self.rows(users)
        matrix, p = self.vectors.matrix, self.params
        own = matrix[rows]
        neighbours = self._neighbour_index().query(rows, p.k)
        if not neighbours.shape[1]:
            return known, own.toarray(out=out)
        out = neighbour_means(matrix, neighbours, out)
        out *= 1 - p.alpha  # float32 times a Python float, as the sparse product's data is scaled
        at = np.repeat(np.arange(len(rows)), np.diff(own.indptr))
        out[at, own.indices] += own.data * p.alpha  # a canonical row holds each column once
        return known, out

    def _neighbour_index(self) -> NeighbourIndex:
        """The neighbour search over the customer vectors, built once per fit (callers score batch by batch)."""
        assert self.vectors is not None, "TifuKnn is not fitted"
        if self._neighbours is None:
            matrix = self.vectors.matrix
            pool = None
            if self.max_pool is not None and matrix.shape[0] > self.max_pool:
                pool = np.random.default_rng(0).choice(matrix.shape[0], self.max_pool, replace=False)
            self._neighbours = NeighbourIndex(matrix, self.params.metric, pool)
        return self._neighbours

    def in_columns(self, item_ids: np.ndarray) -> TifuKnn:
        """This fit scoring over the columns ``item_ids`` (another model's item index) instead of its own.

        The customer vectors are moved once, by a sparse column-selection product (each score keeps its exact value;
        items not in ``item_ids`` lose their column, ``item_ids`` the fit never saw score 0; ties in :meth:`recommend`
        go by column of ``item_ids``); the neighbours are still found among the full vectors, so they and the scores
        are those of this fit."""
        assert self.vectors is not None, "TifuKnn is not fitted"
        index = {item: c for c, item in enumerate(item_ids.tolist())}
        cols = np.array([index.get(i, -1) for i in self.vectors.item_ids.tolist()], dtype=np.int64)
        kept = np.flatnonzero(cols >= 0)
        move = sp.csr_matrix(
            (np.ones(len(kept), np.float32), (kept, cols[kept])), shape=(len(cols), len(item_ids)), dtype=np.float32
        )
        moved = sp.csr_matrix(self.vectors.matrix @ move)
        moved.sort_indices()
        out = copy.copy(self)
        out._neighbours = self._neighbour_index()  # searched on this fit's vectors, shared
        out.vectors = TifuVectors(moved, self.vectors.user_ids, np.asarray(item_ids))
        return out

    def recommend(self, users: Sequence[str], n: int, batch_size: int = 256) -> dict[str, list[tuple[str, float]]]:
        """Top-n (item_id, score) per known user, positive scores only, ties by item id.

        Scored batch by batch in :meth:`dense_scores`' array (the neighbour means of a few thousand customers who
        share most of their neighbours cost a sixth of the sparse product's), kept from batch to batch."""
        out: dict[str, list[tuple[str, float]]] = {}
        known = self.rows(users)[0]
        shape = (min(batch_size, len(known)), len(self.item_ids))
        work, sort = np.empty(shape, dtype=np.float32), np.empty(shape, dtype=np.float32)
        for start in range(0, len(known), batch_size):
            batch = known[start : start + batch_size]
            batch, scores = self.dense_scores(batch, work[: len(batch)])
            for user, top, values in zip(batch, *top_n_dense(scores, n, sort[: len(batch)])):
                out[user] = list(zip(self.item_ids[top].tolist(), values.tolist()))
        return out


def top_n_dense(
    scores: np.ndarray, n: int, work: np.ndarray | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """:func:`top_n_sparse` of a dense (rows x columns) array: the ``n`` highest positive entries of each row, best
    first, ties lower column first (also at the cut: of the entries equal to a row's n-th value, the lowest columns).
    Chosen by :func:`top_rows` (``work``: an array of the shape of ``scores`` to use)."""
    rows = scores.shape[0]
    if not rows:
        return [], []
    pos, cols = top_rows(scores, n, 0.0, _lowest_columns_at_cut, np.empty_like(scores) if work is None else work)
    vals = scores[pos, cols]
    order = np.lexsort((cols, -vals, pos))
    bounds = np.searchsorted(pos[order], np.arange(1, rows))
    return np.split(cols[order], bounds), np.split(vals[order], bounds)


def _lowest_columns_at_cut(values: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` highest positive entries of ``values`` when the n-th is tied: those above it, then the lowest
    columns equal to it."""
    kth = np.partition(values, len(values) - n)[len(values) - n]
    above = np.flatnonzero(values > kth)
    cols = np.concatenate([above, np.flatnonzero(values == kth)[: n - len(above)]])
    return cols[values[cols] > 0]


def top_rows(
    scores: np.ndarray, n: int, floor: float, one_row: Callable[[np.ndarray, int], np.ndarray], work: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of the ``n`` highest entries above ``floor`` of each row of dense ``scores``, rows ascending
    (``work``: an array of its shape to use).

    One partial sort over the batch finds each row's n-th highest value; every entry at or above it is taken. Only a
    row whose n-th value is tied with entries past the cut is chosen by ``one_row(values, n)``, the per-row
    selection this replaces, so which of the tied entries a list gets is as it was."""
    rows, width = scores.shape
    n = min(n, width)
    if n <= 0 or not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    np.copyto(work, scores)
    work.partition(width - n, axis=1)
    kth = work[:, [width - n]].copy()
    take = (scores >= kth) & (scores > floor)
    tied = np.flatnonzero((kth[:, 0] > floor) & (take.sum(axis=1) > n))
    take[tied] = False
    pos, cols = np.nonzero(take)
    if not len(tied):
        return pos.astype(np.int64), cols.astype(np.int64)
    extra = [one_row(scores[r], n).astype(np.int64) for r in tied.tolist()]
    pos = np.concatenate([pos, np.repeat(tied, [len(e) for e in extra])]).astype(np.int64)
    cols = np.concatenate([cols, *extra]).astype(np.int64)
    order = np.argsort(pos, kind="stable")
    return pos[order], cols[order]


DENSE_PRODUCT_FACTOR = 16.0
"""How many more multiplications :func:`neighbour_means` accepts in its dense product than the sparse product would
do: on complete-journey (2,469 customers, 300 neighbours each) a multiplication costs about 1/50 as much there,
where scipy's sparse product also builds and sorts millions of output entries (3.7 s against 0.6 s a night)."""


def neighbour_means(
    matrix: sp.csr_matrix, neighbours: np.ndarray, out: np.ndarray | None = None, factor: float | None = None
) -> np.ndarray:
    """The mean of each row's ``neighbours``' rows of ``matrix``, dense float32 (written to ``out`` when given).

    When a batch's customers share most of their neighbours (a shop with a few thousand customers), the rows the
    batch reads are multiplied by a dense (neighbour x customer) weight array: every stored value is read once for
    all the batch's customers, in a loop the compiler vectorises. Otherwise (customers with neighbours of their
    own) scipy's sparse product, which reads each neighbour's row once per customer that has it: cheaper when rows
    are rarely shared. ``factor`` (default :data:`DENSE_PRODUCT_FACTOR`) weighs the two counts of multiplications."""
    factor = DENSE_PRODUCT_FACTOR if factor is None else factor
    lengths = np.diff(matrix.indptr)
    shared, position = np.unique(neighbours, return_inverse=True)
    b, k = neighbours.shape
    if lengths[shared].sum() * b > factor * lengths[neighbours].sum():
        return (_row_means(neighbours, matrix.shape[0]) @ matrix).toarray(out=out)
    if 2 * len(shared) >= matrix.shape[0]:  # most rows are read: zero weights cost less than copying the rows out
        shared, position = np.arange(matrix.shape[0]), neighbours
    else:
        matrix = matrix[shared]
    weights = np.zeros((len(shared), b), dtype=np.float32)
    weights[position.reshape(b, k), np.arange(b)[:, None]] = 1.0 / k  # a row's neighbours are distinct
    product = matrix.T @ weights  # (items x customers): CSC times dense, one pass over the stored values
    out = np.empty((b, matrix.shape[1]), dtype=np.float32) if out is None else out
    for start in range(0, product.shape[0], _TRANSPOSE_BLOCK):  # in blocks that stay in cache: 5x numpy's copy
        out[:, start : start + _TRANSPOSE_BLOCK] = product[start : start + _TRANSPOSE_BLOCK].T
    return out


_TRANSPOSE_BLOCK = 512


def _row_means(neighbours: np.ndarray, n_rows: int) -> sp.csr_matrix:
    """Sparse (len(neighbours) x n_rows) matrix whose product with a matrix averages the neighbours' rows."""
    b, k = neighbours.shape
    return sp.csr_matrix(
        (np.full(b * k, 1.0 / k, dtype=np.float32), neighbours.ravel(), np.arange(0, b * k + 1, k)),
        shape=(b, n_rows),
    )


def top_n_sparse(scores: sp.csr_matrix, n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Column indices and values of the ``n`` highest positive entries of each row, best first (ties among them:
    lower column, i.e. item id, first), over each row's stored entries (the rest are zero)."""
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    for r in range(scores.shape[0]):
        lo, hi = scores.indptr[r], scores.indptr[r + 1]
        c, v = scores.indices[lo:hi], scores.data[lo:hi]
        if len(v) > n:
            keep = np.argpartition(-v, n - 1)[:n] if n > 0 else np.array([], dtype=np.int64)
            c, v = c[keep], v[keep]
        order = np.lexsort((c, -v))
        c, v = c[order], v[order]
        cols.append(c[v > 0])
        vals.append(v[v > 0])
    return cols, vals
