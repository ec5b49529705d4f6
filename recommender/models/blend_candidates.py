"""Candidates and features of the learned blend: every source's picks for a customer, described alike.

For one moment (``as_of``: the events up to it, the ALS fit and the repeat model fitted on them) a
:class:`CandidateSources` gives, batch by batch, each customer's candidates from every source:

* ``own``: items the customer bought, those most likely due again first (the repeat model, then how often);
* ``als``: their ALS top picks among items they have not bought (discovery);
* ``tifu``: the TIFU-KNN top items (their own time-decayed baskets blended with their nearest customers');
* ``copurchase``: items bought together with theirs (item-item cosine on the bought matrix, implicit);
* ``trending``: the items most bought lately in their favourite categories (ranked by trend, new items included).

Every (customer, candidate) pair gets the same :data:`FEATURES`, computed only from events up to ``as_of``: a
ranker trained on the features at a cut-off and the purchases after it never sees the window it is judged on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from implicit.nearest_neighbours import ItemItemRecommender

from recommender.data.schema import PURCHASE
from recommender.models.als_recommender import AlsFit
from recommender.models.exact_topk import ExactTopK
from recommender.models.repeat import RepeatIndex
from recommender.models.tifu_knn import PUBLISHED, TifuKnn, top_n_sparse, top_rows
from recommender.models.weighting import positions

FEATURES: tuple[str, ...] = (
    "repeat_score",  # probability of buying it again within the horizon (repeat model; 0 when no row)
    "due_in_days",  # days from as_of to the expected repurchase date (365 when no row)
    "bought_days",  # distinct days the customer bought it
    "since_days",  # days since they last bought it (3650 when never)
    "bought_share",  # bought_days / the customer's purchase days
    "als_score",  # ALS preference
    "tifu_score",  # TIFU-KNN score (own decayed baskets blended with the nearest customers')
    "copurchase_score",  # item-item cosine neighbours of their purchases
    "item_repeat_propensity",  # share of the item's purchases that were repeats by the same customer
    "recent_buyers",  # log1p distinct buyers in the last recent_days
    "trend",  # recent buyers / expected at the item's long-run pace
    "category_affinity",  # share of the customer's purchases in the item's category
    "item_age_days",  # days since the item's first event
    "customer_days",  # log1p the customer's purchase days
    "repeat_rank",  # rank of repeat_score among the customer's candidates (0 = best)
    "als_rank",  # rank of als_score among them
    "tifu_rank",  # rank of tifu_score among them
)
SOURCES: tuple[str, ...] = ("own", "als", "tifu", "copurchase", "trending")
_RANKED = ("repeat_score", "als_score", "tifu_score")


@dataclass(frozen=True)
class BlendParams:
    """How many candidates each source gives per customer, and the windows of the features."""

    own: int = 60
    als: int = 40
    tifu: int = 40
    copurchase: int = 30
    trending: int = 15
    favourite_categories: int = 3
    copurchase_neighbours: int = 50
    recent_days: int = 30


@dataclass
class CandidateBatch:
    """Candidates of a batch of customers, one row per (customer, item): ``users[user_pos[r]]`` and column
    ``cols[r]`` of the fit's item ids, ``X[r]`` the features, ``source[r]`` the first source that named it."""

    users: list[str]
    user_pos: np.ndarray
    cols: np.ndarray
    X: np.ndarray
    source: np.ndarray

    def groups(self) -> np.ndarray:
        """Rows per customer, in order (the query groups of a ranker)."""
        return np.bincount(self.user_pos, minlength=len(self.users))


class CandidateSources:
    """Everything the candidates and features of one moment come from, built once per run."""

    def __init__(
        self,
        events: pa.Table,
        items: pa.Table,
        fit: AlsFit,
        repeats: RepeatIndex,
        params: BlendParams | None = None,
        tifu: TifuKnn | None = None,
        neighbours: Neighbours | None = None,
    ) -> None:
        """``neighbours`` gives the co-purchase neighbours of the bought matrix (in the fit's item columns):
        :func:`copurchase` computes them, the nightly job may hand kept ones instead (training/blend_neighbours.py)."""
        self.fit, self.params = fit, params or BlendParams()
        inter, p = fit.inter, self.params
        self.as_of = fit.as_of
        shape = inter.matrix.shape
        purchases = events.filter(
            pc.and_(
                pc.equal(events["event_type"], PURCHASE),
                pc.less_equal(events["timestamp"], pa.scalar(fit.as_of, pa.timestamp("us"))),
            )
        )
        coded = _coded(purchases, inter.user_ids, inter.item_ids)
        self.days, self.since = _pair_stats(coded, fit.as_of, shape)
        self.repeat, self.due = _repeat_matrices(repeats, inter.user_ids, inter.item_ids, fit.as_of, shape)
        self.customer_days = _customer_days(coded, len(inter.user_ids))
        self.item = _item_stats(events, coded, inter.item_ids, self.days, fit.as_of, p.recent_days)
        del coded
        self.category, names = _categories(items, inter.item_ids)
        self.affinity = _category_affinity(self.days, self.category, len(names))
        self.trending = _trending(self.category, len(names), self.item, fit.hidden, p.trending)
        bought = (fit.bought > 0).astype(np.float32).tocsr()
        self.similar = (neighbours or copurchase)(bought, p.copurchase_neighbours)
        self.tifu = (tifu or TifuKnn(PUBLISHED["tafeng"]).fit(purchases)).in_columns(inter.item_ids)
        self._als = ExactTopK(fit.model.item_factors, fit.hidden)
        self._bought = bought
        self._hidden = np.zeros(shape[1], dtype=bool)
        self._hidden[fit.hidden] = True
        self._local = threading.local()  # work arrays of each thread that builds batches

    def batch(self, users: list[str]) -> CandidateBatch:
        """The candidates and features of ``users`` (customers the fit does not know are left out)."""
        inter, p = self.fit.inter, self.params
        users = [u for u in users if u in inter.user_index]
        rows = np.array([inter.user_index[u] for u in users], dtype=np.int64)
        if not len(rows):
            empty = np.array([], dtype=np.int64)
            return CandidateBatch([], empty, empty, np.zeros((0, len(FEATURES)), np.float32), empty)
        user_factors = self.fit.model.user_factors[rows]
        tifu = self._tifu_scores(users)  # dense: on a shop with few customers its rows are mostly non-zero
        co = ((self.fit.bought[rows] > 0).astype(np.float32) @ self.similar).tocsr()
        blocked, hidden = self._bought[rows], self.fit.hidden
        repeat, days = self.repeat[rows], self.days[rows]
        tifu[:, hidden] = 0.0  # unavailable items are left out before each source's top n, not after
        picks = [
            _flat(_top_sparse(_drop_columns(days + repeat * 1000.0, self._hidden), p.own)),  # due again first
            _top_search(self._als, user_factors, blocked, p.als),
            _top_positive(tifu, p.tifu, self._work_array("sort", len(rows))),
            _flat(_top_sparse(_drop_columns(_without(co, blocked), self._hidden), p.copurchase)),
            self._top_trending(rows, blocked),
        ]
        user_pos, cols, source = _union(picks)
        per_pair = {"repeat": repeat, "days": days, "due": self.due[rows], "since": self.since[rows], "co": co}
        at = {name: _values_at(m, user_pos, cols) for name, m in per_pair.items()}  # rows of the batch, in order
        at["tifu"] = tifu[user_pos, cols]
        r = rows[user_pos]
        X = np.column_stack(
            [
                at["repeat"],
                np.where(at["due"] > 0, at["due"] - 1, 365.0),
                at["days"],
                np.where(at["since"] > 0, at["since"] - 1, 3650.0),
                at["days"] / np.maximum(self.customer_days[r], 1),
                _dots(user_factors, self.fit.model.item_factors, user_pos, cols),
                at["tifu"],
                at["co"],
                self.item[cols, 0],
                np.log1p(self.item[cols, 1]),
                self.item[cols, 2],
                _affinity_at(self.affinity[rows], user_pos, self.category[cols]),
                self.item[cols, 3],
                np.log1p(self.customer_days[r]),
            ]
        ).astype(np.float32)
        X = np.column_stack([X, *(_ranks(X[:, FEATURES.index(f)], user_pos) for f in _RANKED)]).astype(np.float32)
        return CandidateBatch(users, user_pos, cols, X, source)

    def _work_array(self, name: str, rows: int) -> np.ndarray:
        """A (``rows`` x items) float32 work array kept from batch to batch, one per thread (threads may build
        batches side by side): a fresh array of that size costs its page faults again on every batch, as much as the
        work done in it."""
        work: dict[str, np.ndarray] = self._local.__dict__.setdefault("work", {})
        kept = work.get(name)
        if kept is None or len(kept) < rows:
            kept = work[name] = np.empty((rows, self.fit.inter.matrix.shape[1]), dtype=np.float32)
        return kept[:rows]

    def _tifu_scores(self, users: list[str]) -> np.ndarray:
        """TIFU-KNN scores of the batch as a dense array in the fit's item columns (customers without purchases:
        rows of zeros)."""
        out = self._work_array("tifu", len(users))
        known, _ = self.tifu.rows(users)
        if len(known) == len(users):
            return self.tifu.dense_scores(users, out=out)[1]
        out.fill(0.0)
        position = {u: k for k, u in enumerate(users)}
        out[[position[u] for u in known]] = self.tifu.dense_scores(known)[1]
        return out

    def _top_trending(self, rows: np.ndarray, blocked: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """(batch row, column) of the trending items of each customer's favourite categories that they have not
        bought (a column may come twice; the union keeps one)."""
        affinity = self.affinity[rows]
        at = np.repeat(np.arange(len(rows), dtype=np.int64), np.diff(affinity.indptr))
        order = np.lexsort((-affinity.data, at))  # best share first; stable: ties keep the stored order
        favourite = order[_rank_in_group(at[order]) < self.params.favourite_categories]
        pos, cats = at[favourite], affinity.indices[favourite].astype(np.int64)
        if not len(self.trending):
            return pos, cats
        sizes = np.array([len(t) for t in self.trending], dtype=np.int64)
        members = np.concatenate(self.trending).astype(np.int64)
        pos, cols = np.repeat(pos, sizes[cats]), members[_ranges(np.cumsum(sizes)[cats] - sizes[cats], sizes[cats])]
        width = np.int64(blocked.shape[1])
        bought = np.repeat(np.arange(blocked.shape[0], dtype=np.int64), np.diff(blocked.indptr)) * width
        keep = ~np.isin(pos * width + cols, bought + blocked.indices)
        return pos[keep], cols[keep]


def _coded(purchases: pa.Table, user_ids: np.ndarray, item_ids: np.ndarray) -> pa.Table:
    """The purchases by the fit's row ``r`` and column ``c`` (-1: a customer or item it does not know), a code ``u``
    of every customer (known or not) and the time: the queries below group and count integers, not id strings."""
    users = purchases["user_id"]
    return pa.table(
        {
            "r": positions(users, user_ids),
            "c": positions(purchases["item_id"], item_ids),
            "u": pc.index_in(users, value_set=pc.unique(users)),
            "timestamp": purchases["timestamp"],
        }
    )


def _pair_stats(coded: pa.Table, as_of: datetime, shape: tuple[int, int]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(distinct purchase days, days since the last one + 1) per customer and item, as matrices of the fit's maps."""
    con = duckdb.connect()
    con.register("p", coded)
    cols = con.execute(
        "SELECT r, c, count(DISTINCT CAST(timestamp AS DATE)) AS n, "
        "date_diff('day', max(CAST(timestamp AS DATE)), CAST($as_of AS DATE)) + 1 AS since "
        "FROM p WHERE r >= 0 AND c >= 0 GROUP BY r, c",
        {"as_of": as_of},
    ).fetchnumpy()
    r, c = np.asarray(cols["r"], np.int64), np.asarray(cols["c"], np.int64)
    days = sp.csr_matrix((np.asarray(cols["n"], np.float32), (r, c)), shape=shape)
    since = sp.csr_matrix((np.asarray(cols["since"], np.float32), (r, c)), shape=shape)
    return days, since


def _repeat_matrices(
    repeats: RepeatIndex, user_ids: np.ndarray, item_ids: np.ndarray, as_of: datetime, shape: tuple[int, int]
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(repeat probability, days until due + 1) per customer and item of the repeat model (pairs of customers or
    items the fit does not know are left out)."""
    rows = positions(pa.array(repeats.user_ids, pa.string()), user_ids).astype(np.int64)
    cols = positions(pa.array(repeats.item_ids, pa.string()), item_ids).astype(np.int64)
    idx = np.flatnonzero((rows >= 0) & (cols >= 0))
    rows, cols = rows[idx], cols[idx]
    score = np.asarray(repeats.scores, dtype=np.float32)[idx] if len(idx) else np.array([], np.float32)
    today = np.datetime64(as_of.date())
    due = (repeats.due[idx] - today).astype(np.float32) + 1 if len(idx) else np.array([], np.float32)
    return (
        sp.csr_matrix((np.maximum(score, 1e-6), (rows, cols)), shape=shape),
        sp.csr_matrix((np.maximum(due, 1), (rows, cols)), shape=shape),
    )


def _customer_days(coded: pa.Table, n_users: int) -> np.ndarray:
    con = duckdb.connect()
    con.register("p", coded)
    cols = con.execute(
        "SELECT r, count(DISTINCT CAST(timestamp AS DATE)) AS n FROM p WHERE r >= 0 GROUP BY r"
    ).fetchnumpy()
    out = np.zeros(n_users, dtype=np.float32)
    out[np.asarray(cols["r"], np.int64)] = np.asarray(cols["n"], np.float32)
    return out


def _item_stats(
    events: pa.Table, coded: pa.Table, item_ids: np.ndarray, days: sp.csr_matrix, as_of: datetime, recent: int
) -> np.ndarray:
    """Per item column: repeat propensity, recent buyers, trend, age in days (``coded``: the purchases, see
    :func:`_coded`)."""
    con = duckdb.connect()
    con.register("e", pa.table({"c": positions(events["item_id"], item_ids), "timestamp": events["timestamp"]}))
    con.register("p", coded)
    since = as_of - timedelta(days=recent)
    buyers = con.execute(
        "SELECT c, count(DISTINCT u) FILTER (WHERE timestamp > $since) AS recent, "
        "count(DISTINCT u) AS buyers FROM p WHERE c >= 0 GROUP BY c",
        {"since": since},
    ).fetchnumpy()
    first = con.execute(
        "SELECT c, date_diff('day', min(timestamp), CAST($as_of AS TIMESTAMP)) AS age "
        "FROM e WHERE c >= 0 AND timestamp <= $as_of GROUP BY c",
        {"as_of": as_of},
    ).fetchnumpy()
    span = con.execute("SELECT date_diff('day', min(timestamp), CAST($as_of AS TIMESTAMP)) FROM p", {"as_of": as_of})
    span_days = max(float(span.fetchone()[0] or 1), 1.0)
    out = np.zeros((len(item_ids), 4), dtype=np.float32)
    c = np.asarray(buyers["c"], np.int64)
    out[c, 1] = np.asarray(buyers["recent"], np.float32)
    expected = np.asarray(buyers["buyers"], np.float32) * min(recent / span_days, 1.0)
    out[:, 2] = 1.0
    out[c, 2] = (out[c, 1] + 1) / (expected + 1)
    total = np.asarray(days.sum(axis=0)).ravel()
    pairs = np.asarray((days > 0).sum(axis=0)).ravel()
    out[:, 0] = np.where(total > 0, (total - pairs) / np.maximum(total, 1), 0.0)
    out[:, 3] = 3650.0
    out[np.asarray(first["c"], np.int64), 3] = np.asarray(first["age"], np.float32)
    return out


def _categories(items: pa.Table, item_ids: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Category code per item column (-1: none) and the category names."""
    mapping = dict(zip(items["item_id"].to_pylist(), items["category"].to_pylist()))
    names = sorted({c for c in mapping.values() if c})
    code = {n: k for k, n in enumerate(names)}
    return np.array([code.get(mapping.get(i) or "", -1) for i in item_ids.tolist()], dtype=np.int64), names


def _category_affinity(days: sp.csr_matrix, category: np.ndarray, n_categories: int) -> sp.csr_matrix:
    """Share of each customer's purchase days per category (customers x categories)."""
    if n_categories == 0:
        return sp.csr_matrix((days.shape[0], 1), dtype=np.float32)
    known = category >= 0
    to_cat = sp.csr_matrix(
        (np.ones(known.sum(), np.float32), (np.flatnonzero(known), category[known])),
        shape=(days.shape[1], n_categories),
    )
    counts = (days @ to_cat).tocsr()
    totals = np.asarray(counts.sum(axis=1)).ravel()
    return sp.diags(1.0 / np.maximum(totals, 1.0)).astype(np.float32) @ counts


def _affinity_at(affinity: sp.csr_matrix, rows: np.ndarray, categories: np.ndarray) -> np.ndarray:
    known = categories >= 0
    out = np.zeros(len(rows), dtype=np.float32)
    if known.any():
        out[known] = _values_at(affinity, rows[known], categories[known])
    return out


def _trending(
    category: np.ndarray, n_categories: int, item: np.ndarray, hidden: np.ndarray, n: int
) -> list[np.ndarray]:
    """Per category, its items with recent buyers ranked by trend times recent buyers, best first."""
    score = item[:, 2] * np.log1p(item[:, 1])
    score[hidden] = 0.0
    out = []
    for c in range(n_categories):
        members = np.flatnonzero((category == c) & (item[:, 1] > 0) & (score > 0))
        out.append(members[np.argsort(-score[members], kind="stable")][:n])
    return out


Neighbours = Callable[[sp.csr_matrix, int], sp.csr_matrix]
"""(binary bought matrix, neighbours per item) -> item x item co-purchase neighbours."""


def copurchase(bought: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Item-item cosine neighbours (``k`` per item) of the binary bought matrix: implicit's item-item neighbours of
    the matrix with each item's column scaled to unit length, as its CosineRecommender computes them (same values,
    in float64), but scaled in CSR: CosineRecommender hands a COO matrix on, which implicit then converts with a
    warning."""
    bought = sp.csr_matrix(bought, dtype=np.float64, copy=True)  # scaled in place below: never the caller's
    bought.sort_indices()
    norms = np.sqrt(np.bincount(bought.indices, bought.data**2, minlength=bought.shape[1]))
    bought.data /= norms[bought.indices]
    model = ItemItemRecommender(K=k)
    model.fit(bought, show_progress=False)
    similar = model.similarity.tocsr().astype(np.float32)
    similar.sort_indices()  # one order of the sums built from it, computed here or kept and read back
    return similar


def _ranks(values: np.ndarray, user_pos: np.ndarray) -> np.ndarray:
    """Rank of each row's value among its customer's rows, best (highest) first from 0; rows are grouped by
    customer in order."""
    order = np.lexsort((-values, user_pos))
    out = np.empty(len(order), dtype=np.float32)
    out[order] = _rank_in_group(user_pos[order])
    return out


def _rank_in_group(grouped: np.ndarray) -> np.ndarray:
    """Position of each element within its run of equal values of ``grouped`` (0, 1, ... from each run's start)."""
    if not len(grouped):
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(grouped)) + 1]
    return np.arange(len(grouped)) - np.repeat(starts, np.diff(np.r_[starts, len(grouped)]))


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``starts[k], starts[k] + 1, ..., starts[k] + lengths[k] - 1`` for every k, concatenated."""
    total = int(lengths.sum())
    ends = np.cumsum(lengths)
    return np.repeat(starts - ends + lengths, lengths) + np.arange(total, dtype=np.int64)


def _flat(per_row: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) pairs of per-row column arrays."""
    lengths = np.array([len(found) for found in per_row], dtype=np.int64)
    cols = np.concatenate(per_row).astype(np.int64) if lengths.sum() else np.zeros(0, np.int64)
    return np.repeat(np.arange(len(per_row), dtype=np.int64), lengths), cols


def _values_at(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``matrix[rows[k], cols[k]]`` for every k (0 where nothing is stored), as a flat float32 array.

    One binary search of the wanted (row, column) keys among the stored entries' keys, sorted in a canonical CSR
    matrix: scipy's element-wise indexing scans a row per look-up, which took seconds on long rows."""
    if not len(rows):
        return np.array([], dtype=np.float32)
    if not matrix.has_canonical_format:
        matrix = _sorted_rows(matrix)
        matrix.sum_duplicates()
    width = np.int64(matrix.shape[1])
    stored = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr)) * width + matrix.indices
    wanted = rows.astype(np.int64) * width + cols
    out = np.zeros(len(wanted), dtype=np.float32)
    if len(stored):
        at = np.minimum(np.searchsorted(stored, wanted), len(stored) - 1)
        found = stored[at] == wanted
        out[found] = matrix.data[at[found]]
    return out


def _sorted_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """``matrix`` with each row's columns in ascending order: converted to CSC and back, two linear passes (scipy's
    ``sort_indices`` sorts each row by comparison, slower on the long rows of a product)."""
    return matrix.tocsc().tocsr()


def _without(matrix: sp.csr_matrix, blocked: sp.csr_matrix) -> sp.csr_matrix:
    """``matrix`` with the ``blocked`` entries dropped."""
    out = matrix - matrix.multiply(blocked > 0)
    out.eliminate_zeros()
    return out.tocsr()


def _drop_columns(matrix: sp.csr_matrix, hidden: np.ndarray) -> sp.csr_matrix:
    """``matrix`` (positive where stored) without its entries in the columns ``hidden`` marks (a boolean per column)."""
    matrix = matrix.tocsr()
    if not hidden.any():
        return matrix
    matrix = matrix.copy()
    matrix.data[hidden[matrix.indices]] = 0
    matrix.eliminate_zeros()
    return matrix


def _top_search(
    search: ExactTopK, user_factors: np.ndarray, blocked: sp.csr_matrix, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of each customer's ``n`` best ALS items, ``blocked`` (bought) and unavailable ones left out: the
    exact search the personal lists use, which scores the items that can still make the list, not all of them."""
    ids, _ = search.search(user_factors, n, exclude=blocked)
    pos = np.repeat(np.arange(len(ids), dtype=np.int64), ids.shape[1])
    cols = ids.ravel()
    return pos[cols >= 0], cols[cols >= 0]


def _dots(user_factors: np.ndarray, item_factors: np.ndarray, user_pos: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """ALS score of each (batch row, column) candidate, summed in float64 pair by pair: a candidate's feature does
    not depend on which customers share its batch."""
    return np.einsum(
        "nf,nf->n", user_factors[user_pos].astype(np.float64), item_factors[cols].astype(np.float64), optimize=False
    )


def _top_positive(scores: np.ndarray, n: int, work: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of the ``n`` highest positive entries of each row of dense ``scores``, chosen as
    :func:`top_n_sparse` chooses among a row's non-zero entries (``work``: an array of its shape to use)."""
    return top_rows(scores, n, 0.0, lambda values, n: top_n_sparse(sp.csr_matrix(values[None, :]), n)[0][0], work)


def _top_sparse(scores: sp.csr_matrix, n: int) -> list[np.ndarray]:
    return top_n_sparse(scores, n)[0]


def _union(picks: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row position, column, source index) of every distinct candidate, from each source's (row position, column)
    picks (each source has left unavailable items out already); rows in order and columns ascending within a row; a
    candidate named by several sources keeps the first. Vectorised over the batch: one sort of (row, column, source)
    keys."""
    user_pos = np.concatenate([pos for pos, _ in picks]).astype(np.int64)
    col = np.concatenate([cols for _, cols in picks]).astype(np.int64)
    source = np.concatenate([np.full(len(pos), s, dtype=np.int64) for s, (pos, _) in enumerate(picks)])
    order = np.lexsort((source, col, user_pos))
    user_pos, col, source = user_pos[order], col[order], source[order]
    first = np.r_[True, (np.diff(user_pos) != 0) | (np.diff(col) != 0)] if len(col) else np.zeros(0, bool)
    return user_pos[first], col[first], source[first]
