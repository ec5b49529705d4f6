"""Baseline recommenders for offline evaluation.

All share the interface of every model (:class:`recommender.models.base.Recommender`): ``fit(train, **kw)`` on a
canonical event table, then ``recommend(user_ids, k) -> {user_id: [item_id, ...]}`` (best first, at most k items).
Ties are always broken by ascending item_id, so results are deterministic. With ``filter_purchased=True`` the
items a user purchased in ``train`` are never recommended to that user; with ``fit(train, items=catalogue)``
unavailable items are never recommended. "return" events are ignored.

Personal baselines fill short lists from a popularity ranking (``fill_popular``): items by distinct
purchasers, then by distinct interacting users (view/cart/purchase), then item_id.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recommender.data.schema import CART, PURCHASE, VIEW
from recommender.evaluation.split import order_keys, targets
from recommender.models.base import Recommender, unavailable_items
from recommender.models.tifu_knn import TifuKnn, TifuParams

INTERACTIONS: tuple[str, ...] = (VIEW, CART, PURCHASE)


class Baseline(Recommender):
    """Common fit/recommend plumbing: exclusion of purchased and unavailable items, filling from a fallback list."""

    def __init__(self, *, filter_purchased: bool = False) -> None:
        self.filter_purchased = filter_purchased
        self._fitted = False
        self._purchased: dict[str, set[str]] = {}
        self._fallback: list[str] = []
        self._unavailable: frozenset[str] = frozenset()

    def fit(self, train: pa.Table, *, items: pa.Table | None = None, **kw: Any) -> Baseline:
        """Learn from ``train``; items ``items`` marks unavailable are never recommended. Other keyword arguments
        are accepted and ignored."""
        self._purchased = targets(train, "purchase") if self.filter_purchased else {}
        self._unavailable = unavailable_items(items)
        self._fit(train, **kw)
        self._fitted = True
        return self

    def recommend(self, user_ids: Iterable[str], k: int) -> dict[str, list[str]]:
        """Top-k item ids for each user (unknown users get the fallback list, possibly empty)."""
        return self._top(list(dict.fromkeys(user_ids)), k)

    def recommend_excluding(
        self, user_ids: Sequence[str], k: int, exclude: Mapping[str, Collection[str]]
    ) -> dict[str, list[str]]:
        """Top-k per user without the user's ``exclude`` items (nor unavailable ones).

        Users are asked for ``k + 2**ceil(log2 |excluded|)`` items in a few batches of similar depth, so that k
        remain after the exclusion whenever the baseline has that many.
        """
        by_depth: dict[int, list[str]] = {}
        for u in dict.fromkeys(user_ids):
            extra = len(exclude.get(u, _EMPTY))
            by_depth.setdefault(k + (2 ** math.ceil(math.log2(extra)) if extra else 0), []).append(u)
        out: dict[str, list[str]] = {}
        for depth, group in by_depth.items():
            for u, items in self._top(group, depth).items():
                drop = exclude.get(u, _EMPTY)
                out[u] = [i for i in items if i not in drop][:k]
        return out

    def _top(self, users: list[str], k: int) -> dict[str, list[str]]:
        """Top-k available items per user. Unavailable items are skipped, never copied into each user's exclusions
        (thousands of unavailable items times tens of thousands of users took gigabytes)."""
        if not self._fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        if k < 0:
            raise ValueError(f"k must be non-negative, got {k}")
        personal = self._candidates(users, k)
        skip = self._unavailable
        return {u: _take(k, self._excluded(u), personal.get(u, ()), self._fallback, skip=skip) for u in users}

    def _fit(self, train: pa.Table, **kw: Any) -> None:
        raise NotImplementedError

    def _candidates(self, users: list[str], k: int) -> Mapping[str, Sequence[str]]:
        """Personal ranked candidates per user (before exclusions and filling)."""
        return {}

    def _excluded(self, user: str) -> Iterable[str]:
        """Items never to recommend to ``user``."""
        return self._purchased.get(user, _EMPTY)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_") and not k.endswith("_"))
        return f"{type(self).__name__}({params})"


class GlobalPopularity(Baseline):
    """Most popular items: distinct users per item, each user counted once at the weight of their
    strongest event on it (default weight 1 for view/cart/purchase, i.e. distinct interacting users).

    ``weights`` maps event types to weights (missing types count 0); ``purchase_only`` counts only
    distinct purchasers.
    """

    def __init__(
        self,
        *,
        weights: Mapping[str, float] | None = None,
        purchase_only: bool = False,
        filter_purchased: bool = False,
    ) -> None:
        super().__init__(filter_purchased=filter_purchased)
        self.weights = _check_weights(weights)
        self.purchase_only = purchase_only

    def _fit(self, train: pa.Table, **kw: Any) -> None:
        types = (PURCHASE,) if self.purchase_only else INTERACTIONS
        rows = _of_types(train, types)
        if self.weights is None or self.purchase_only:
            scores = _distinct_users(rows, "score")
        else:
            rows = rows.append_column("w", _event_weights(rows, self.weights))
            per_user = rows.group_by(["item_id", "user_id"]).aggregate([("w", "max")])
            scores = per_user.group_by("item_id").aggregate([("w_max", "sum")])
            scores = scores.rename_columns(["item_id", "score"])
            scores = scores.filter(pc.greater(scores["score"], 0))
        self._fallback = _ranked(scores, ["score"])


class RecentPopularity(Baseline):
    """Items with the most distinct purchasers in the last ``window_days`` of the training data
    (counted back from its newest event); then the other purchased items by all-time distinct
    purchasers."""

    def __init__(self, window_days: float, *, filter_purchased: bool = False) -> None:
        super().__init__(filter_purchased=filter_purchased)
        if window_days <= 0:
            raise ValueError(f"window_days must be positive, got {window_days}")
        self.window_days = window_days

    def _fit(self, train: pa.Table, **kw: Any) -> None:
        purchases = _of_types(train, (PURCHASE,))
        now = pc.max(train["timestamp"]).as_py()
        if now is None or purchases.num_rows == 0:
            self._fallback = []
            return
        since = pa.scalar(now - timedelta(days=self.window_days), train["timestamp"].type)
        recent = purchases.filter(pc.greater_equal(purchases["timestamp"], since))
        scores = _distinct_users(purchases, "all_time").join(
            _distinct_users(recent, "recent"), "item_id", join_type="left outer"
        )
        scores = scores.set_column(scores.schema.get_field_index("recent"), "recent", pc.fill_null(scores["recent"], 0))
        self._fallback = _ranked(scores, ["recent", "all_time"])


class PersonalTopFrequency(Baseline):
    """The customer's own most frequently purchased items (number of distinct orders), ties by most
    recent purchase, then item_id; filled from the popularity ranking if ``fill_popular``."""

    def __init__(self, *, fill_popular: bool = True, filter_purchased: bool = False) -> None:
        super().__init__(filter_purchased=filter_purchased)
        self.fill_popular = fill_popular
        self._personal: dict[str, list[str]] = {}

    def _fit(self, train: pa.Table, **kw: Any) -> None:
        purchases = _of_types(train, (PURCHASE,))
        purchases = purchases.append_column("order_key", order_keys(purchases))
        stats = purchases.group_by(["user_id", "item_id"]).aggregate(
            [("order_key", "count_distinct"), ("timestamp", "max")]
        )
        stats = stats.sort_by(
            [
                ("user_id", "ascending"),
                ("order_key_count_distinct", "descending"),
                ("timestamp_max", "descending"),
                ("item_id", "ascending"),
            ]
        )
        self._personal = _lists_by_user(stats)
        self._fallback = popularity_ranking(train) if self.fill_popular else []

    def _candidates(self, users: list[str], k: int) -> Mapping[str, Sequence[str]]:
        return self._personal


class MostRecentItems(Baseline):
    """The customer's own purchased items, most recently purchased first (ties by item_id);
    filled from the popularity ranking only if ``fill_popular``."""

    def __init__(self, *, fill_popular: bool = False, filter_purchased: bool = False) -> None:
        super().__init__(filter_purchased=filter_purchased)
        self.fill_popular = fill_popular
        self._personal: dict[str, list[str]] = {}

    def _fit(self, train: pa.Table, **kw: Any) -> None:
        purchases = _of_types(train, (PURCHASE,))
        stats = purchases.group_by(["user_id", "item_id"]).aggregate([("timestamp", "max")])
        stats = stats.sort_by([("user_id", "ascending"), ("timestamp_max", "descending"), ("item_id", "ascending")])
        self._personal = _lists_by_user(stats)
        self._fallback = popularity_ranking(train) if self.fill_popular else []

    def _candidates(self, users: list[str], k: int) -> Mapping[str, Sequence[str]]:
        return self._personal


class ItemKNN(Baseline):
    """Item-item nearest neighbours (implicit's ``CosineRecommender`` or ``BM25Recommender``) on a
    user x item matrix from ``train``.

    Matrix values are binary (any view/cart/purchase, or any purchase if ``purchase_only``) unless
    ``weights`` is given, in which case each cell is the sum of its events' weights. implicit fits
    the item-item similarity (``K`` neighbours per item); a user's score for an item is
    ``user_row @ similarity``, which is exactly what implicit's ``recommend`` computes, but done here
    with scipy so that ties are broken by item_id and lists are not padded with -1. Only positive
    scores are kept; lists are filled from the popularity ranking if ``fill_popular``.
    ``filter_already_liked`` never recommends an item in the user's row (like implicit's
    ``filter_already_liked_items``), filler included.

    Fitted attributes: ``model_`` (the implicit model), ``user_ids_`` / ``item_ids_`` (sorted ids,
    row / column order) and ``user_items_`` (csr float32).
    """

    def __init__(
        self,
        kind: Literal["cosine", "bm25"] = "cosine",
        K: int = 100,
        *,
        weights: Mapping[str, float] | None = None,
        purchase_only: bool = False,
        K1: float = 1.2,
        B: float = 0.75,
        filter_already_liked: bool = False,
        fill_popular: bool = True,
        filter_purchased: bool = False,
        batch_size: int = 10_000,
    ) -> None:
        super().__init__(filter_purchased=filter_purchased)
        if kind not in ("cosine", "bm25"):
            raise ValueError(f"kind must be 'cosine' or 'bm25', got {kind!r}")
        self.kind = kind
        self.K = K
        self.weights = _check_weights(weights)
        self.purchase_only = purchase_only
        self.K1 = K1
        self.B = B
        self.filter_already_liked = filter_already_liked
        self.fill_popular = fill_popular
        self.batch_size = batch_size
        self.model_: Any = None
        self.user_ids_ = np.array([], dtype=object)
        self.item_ids_ = np.array([], dtype=object)
        self.user_items_ = sp.csr_matrix((0, 0), dtype=np.float32)

    def _fit(self, train: pa.Table, *, show_progress: bool = False, **kw: Any) -> None:
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
        from implicit.utils import ParameterWarning

        rows = _of_types(train, (PURCHASE,) if self.purchase_only else INTERACTIONS)
        if self.weights is not None:
            values = _event_weights(rows, self.weights).to_numpy()
        else:
            values = np.ones(rows.num_rows)
        users = rows["user_id"].to_numpy(zero_copy_only=False)
        items = rows["item_id"].to_numpy(zero_copy_only=False)
        self.user_ids_, u_idx = np.unique(users, return_inverse=True)
        self.item_ids_, i_idx = np.unique(items, return_inverse=True)
        shape = (len(self.user_ids_), len(self.item_ids_))
        matrix = sp.csr_matrix((values, (u_idx.ravel(), i_idx.ravel())), shape=shape)  # duplicates summed
        matrix.eliminate_zeros()
        if self.weights is None:
            matrix.data[:] = 1.0
        self.user_items_ = matrix.astype(np.float32)
        if self.kind == "cosine":
            self.model_ = CosineRecommender(K=self.K)
        else:
            self.model_ = BM25Recommender(K=self.K, K1=self.K1, B=self.B)
        if self.user_items_.nnz:
            with threadpool_limits(1, "blas"), warnings.catch_warnings():
                # implicit re-weights into a COO matrix internally and then warns about its own input
                warnings.simplefilter("ignore", ParameterWarning)
                self.model_.fit(self.user_items_, show_progress=show_progress)
        self._fallback = popularity_ranking(train) if self.fill_popular else []

    def _rows(self, users: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(mask of users known to the matrix, their row indices)."""
        query = np.array(users, dtype=object)
        n = len(self.user_ids_)
        if n == 0:
            return np.zeros(len(query), dtype=bool), np.array([], dtype=np.int64)
        pos = np.searchsorted(self.user_ids_, query)
        known = (pos < n) & (self.user_ids_[np.minimum(pos, n - 1)] == query)
        return known, pos[known]

    def _excluded(self, user: str) -> Iterable[str]:
        excluded = self._purchased.get(user, _EMPTY)
        if not self.filter_already_liked:
            return excluded
        known, rows = self._rows([user])
        if not known[0]:
            return excluded
        m = self.user_items_
        liked = self.item_ids_[m.indices[m.indptr[rows[0]] : m.indptr[rows[0] + 1]]]
        return set(excluded).union(liked)

    def _candidates(self, users: list[str], k: int) -> Mapping[str, Sequence[str]]:
        if self.model_ is None or self.model_.similarity is None or k == 0:
            return {}
        known, rows = self._rows(users)
        known_users = [u for u, ok in zip(users, known) if ok]
        out: dict[str, list[str]] = {}
        for start in range(0, len(rows), self.batch_size):
            batch_users = known_users[start : start + self.batch_size]
            limits = np.array([k + len(self._purchased.get(u, _EMPTY)) for u in batch_users])
            out.update(zip(batch_users, self._top_items(rows[start : start + self.batch_size], limits)))
        return out

    def scores(self, rows: np.ndarray) -> sp.csr_matrix:
        """Score matrix (len(rows) x items) for matrix rows, after ``filter_already_liked``."""
        liked = self.user_items_[rows]
        scores = sp.csr_matrix(liked @ self.model_.similarity)
        if self.filter_already_liked:
            scores = sp.csr_matrix(scores - scores.multiply(liked > 0))
        return scores

    def _top_items(self, rows: np.ndarray, limits: np.ndarray) -> list[list[str]]:
        """Per row: items by descending score then item index (= item_id order), at most limits[i]."""
        coo = self.scores(rows).tocoo()
        positive = coo.data > 0
        row, col, score = coo.row[positive], coo.col[positive], coo.data[positive]
        order = np.lexsort((col, -score, row))
        row, col = row[order], col[order]
        rank = np.arange(len(row)) - np.searchsorted(row, row)  # position within the row
        keep = rank < limits[row]
        row, col = row[keep], col[keep]
        bounds = np.searchsorted(row, np.arange(1, len(rows)))
        return [list(items) for items in np.split(self.item_ids_[col], bounds)]


class TifuKNN(Baseline):
    """TIFU-KNN (:mod:`recommender.models.tifu_knn`): the customer's time-decayed item frequencies blended with
    their nearest customers'; filled from the popularity ranking. With ``tune_days`` the parameters are first chosen
    on a validation window of that many days at the end of the training events
    (:func:`recommender.evaluation.tifu_tuning.tune_tifu`), then the model is refitted on all of them.

    Fitted attributes: ``model_`` (the :class:`TifuKnn`), ``tuning_`` (the search, when tuned)."""

    def __init__(
        self, params: TifuParams | None = None, *, tune_days: int | None = None, filter_purchased: bool = False
    ) -> None:
        super().__init__(filter_purchased=filter_purchased)
        self.params = params or TifuParams()
        self.tune_days = tune_days
        self.model_: TifuKnn | None = None
        self.tuning_: dict[str, Any] | None = None

    def _fit(self, train: pa.Table, **kw: Any) -> None:
        params = self.params
        if self.tune_days:
            from recommender.evaluation.tifu_tuning import tune_tifu

            params, self.tuning_ = tune_tifu(train, validation_days=self.tune_days, start=self.params)
        self.model_ = TifuKnn(params).fit(train)
        self._fallback = popularity_ranking(train)

    def _candidates(self, users: list[str], k: int) -> Mapping[str, Sequence[str]]:
        assert self.model_ is not None
        return {u: [i for i, _ in r] for u, r in self.model_.recommend(users, k).items()}


def popularity_ranking(train: pa.Table) -> list[str]:
    """Item ids by distinct purchasers, then distinct interacting users, then item_id.

    One DuckDB pass over the distinct (item, user) pairs, filtered inside the query: filtering the events first
    copied every column of nearly the whole log (on 9.6 million events the gate's peak)."""
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        con.register("t", train.select(["item_id", "user_id", "event_type"]))
        kinds = ", ".join(f"'{kind}'" for kind in INTERACTIONS)
        return [
            row[0]
            for row in con.execute(
                f"""
                WITH pairs AS (
                  SELECT item_id, bool_or(event_type = '{PURCHASE}') AS bought
                  FROM t WHERE event_type IN ({kinds}) GROUP BY item_id, user_id)
                SELECT item_id FROM pairs GROUP BY item_id
                ORDER BY count(*) FILTER (WHERE bought) DESC, count(*) DESC, item_id
                """
            ).fetchall()
        ]
    finally:
        con.close()


# --- helpers ---------------------------------------------------------------------------------------

_EMPTY: frozenset[str] = frozenset()


def _take(k: int, exclude: Iterable[str], *sources: Sequence[str], skip: Collection[str] = frozenset()) -> list[str]:
    """The first k distinct items from ``sources`` in order, skipping ``exclude`` and ``skip``."""
    out: list[str] = []
    seen = set(exclude)
    for source in sources:
        for item in source:
            if len(out) >= k:
                return out
            if item not in seen and item not in skip:
                seen.add(item)
                out.append(item)
    return out


def _of_types(events: pa.Table, types: Sequence[str]) -> pa.Table:
    return events.filter(pc.is_in(events["event_type"], value_set=pa.array(list(types), pa.string())))


def _distinct_users(events: pa.Table, name: str) -> pa.Table:
    """(item_id, <name>): distinct users per item (rows in no particular order).

    Counted by DuckDB over the distinct (item, user) pairs: on 9.6 million events Arrow's ``count_distinct`` kept a
    set per item and peaked 1.1 GB above its input in 3.9 s; this takes half of that in 1.7 s."""
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        con.register("t", events.select(["item_id", "user_id"]))
        counts = con.sql(
            "SELECT item_id, count(*) AS n FROM (SELECT DISTINCT item_id, user_id FROM t) GROUP BY item_id"
        ).to_arrow_table()
    finally:
        con.close()
    return pa.table({"item_id": counts["item_id"].cast(pa.string()), name: counts["n"].cast(pa.int64())})


def _ranked(scores: pa.Table, keys: list[str]) -> list[str]:
    order = [(key, "descending") for key in keys] + [("item_id", "ascending")]
    return scores.sort_by(order)["item_id"].to_pylist()


def _lists_by_user(table: pa.Table) -> dict[str, list[str]]:
    """Group an already user-sorted table's item_id column into per-user lists (order kept)."""
    if table.num_rows == 0:
        return {}
    users = table["user_id"].to_numpy(zero_copy_only=False)
    items = table["item_id"].to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    return {user: list(chunk) for user, chunk in zip(users[starts], np.split(items, starts[1:]))}


def _check_weights(weights: Mapping[str, float] | None) -> dict[str, float] | None:
    if weights is None:
        return None
    unknown = set(weights) - set(INTERACTIONS)
    if unknown:
        raise ValueError(f"weights for unknown event types {sorted(unknown)}; allowed: {INTERACTIONS}")
    if any(w < 0 for w in weights.values()):
        raise ValueError("event weights must be non-negative")
    return dict(weights)


def _event_weights(events: pa.Table, weights: Mapping[str, float]) -> pa.Array:
    """Weight per row from its event type (0 for types without a weight)."""
    types = pa.array(list(weights), pa.string())
    index = pc.index_in(events["event_type"], value_set=types)
    values = pa.array([float(w) for w in weights.values()] or [0.0], pa.float64())
    return pc.fill_null(pc.take(values, index), 0.0)
