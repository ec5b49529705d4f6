"""The published lists: personal picks, bestsellers, new arrivals, similar items, next likely purchase.

Every list is a ranking of ``(item_id, score)`` pairs; keyed lists are yielded lazily so a shop with millions of
users is streamed to the cache in batches instead of being held in memory. Unavailable items never appear.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares

from recommender.models.als import recommend_batches, similar_batches, similar_rows
from recommender.models.similar_index import similar_batches_ivf
from recommender.models.weighting import Interactions

Ranked = list[tuple[str, float]]


def _con(**tables: pa.Table) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for name, table in tables.items():
        con.register(name, table)
    return con


def hidden_item_indices(items: pa.Table, inter: Interactions) -> np.ndarray:
    """Matrix columns of items the catalogue marks unavailable."""
    gone = items.filter(pc.invert(items["available"]))["item_id"].to_pylist()
    return np.array(sorted(inter.item_index[i] for i in gone if i in inter.item_index), dtype=np.int32)


FILTERED_SCORE = -1e30
"""implicit pads a list with filtered-out items scored -FLT_MAX when fewer items are left than asked for."""


def _rounded(scores: np.ndarray) -> np.ndarray:
    """Scores rounded to 5 decimals as float64, equal to ``round(float(s), 5)`` for every float32 score (times 1e5
    is exact in float64, and both round half to even); other dtypes go through Python's round."""
    if scores.dtype == np.float32:
        return np.round(scores.astype(np.float64), 5)
    return np.array([round(float(s), 5) for s in scores.ravel()], dtype=np.float64).reshape(scores.shape)


def ranked_rows(ids: np.ndarray, scores: np.ndarray, item_ids: np.ndarray) -> list[Ranked]:
    """One ranked list per row of a top-k batch, built on whole arrays (implicit's padding and invalid entries
    dropped)."""
    keep = (ids >= 0) & np.isfinite(scores) & (scores > FILTERED_SCORE)
    names = item_ids[np.where(keep, ids, 0)].tolist()
    values = _rounded(np.where(keep, scores, scores.dtype.type(0))).tolist()
    if keep.all():
        return [list(zip(n, v)) for n, v in zip(names, values)]
    return [[(i, s) for i, s, k in zip(n, v, row) if k] for n, v, row in zip(names, values, keep.tolist())]


def personal_pick_batches(
    model: AlternatingLeastSquares,
    inter: Interactions,
    n: int,
    exclude: sp.csr_matrix | None,
    hidden: np.ndarray,
    users: np.ndarray | None = None,
) -> Iterator[tuple[list[str], list[Ranked]]]:
    """ALS top-n per user (every user, or the matrix rows ``users``), batch by batch: (user ids, their ranked lists),
    leaving out each user's ``exclude`` row."""
    for rows, ids, scores in recommend_batches(model, exclude, n, hidden, users=users):
        yield inter.user_ids[rows].tolist(), ranked_rows(ids, scores, inter.item_ids)


def personal_picks(
    model: AlternatingLeastSquares,
    inter: Interactions,
    n: int,
    exclude: sp.csr_matrix | None,
    hidden: np.ndarray,
) -> Iterator[tuple[str, Ranked]]:
    """ALS top-n for every user of the matrix, leaving out each user's ``exclude`` row (e.g. purchases)."""
    for users, ranked in personal_pick_batches(model, inter, n, exclude, hidden):
        yield from zip(users, ranked)


def personal_picks_of(
    model: AlternatingLeastSquares,
    inter: Interactions,
    user_ids: Sequence[str],
    n: int,
    exclude: sp.csr_matrix | None,
    hidden: np.ndarray,
) -> dict[str, Ranked]:
    """:func:`personal_picks` of the given users (those the matrix does not know are left out)."""
    rows = np.array([inter.user_index[u] for u in user_ids if u in inter.user_index], dtype=np.int64)
    if not len(rows) or n <= 0:
        return {}
    out: dict[str, Ranked] = {}
    for users, ranked in personal_pick_batches(model, inter, n, exclude, hidden, rows):
        out.update(zip(users, ranked))
    return out


SimilarRows = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""(item columns, their similar item columns (b x n), scores rounded like :func:`ranked_rows`, which entries to
keep)."""


def similar_item_rows(
    model: AlternatingLeastSquares,
    inter: Interactions,
    n: int,
    hidden: np.ndarray,
    exact_max_items: int = 20_000,
    items: np.ndarray | None = None,
) -> Iterator[SimilarRows]:
    """Items whose ALS factors are closest (cosine) to each item's (every item, or the columns ``items``), batch by
    batch as arrays (:data:`SimilarRows`). Every pair is scored up to ``exact_max_items`` items (what the API does
    for one item on request, :func:`exact_similar_rows`), an approximate index above
    (:mod:`recommender.models.similar_index`)."""
    if len(inter.item_ids) <= exact_max_items:
        yield from exact_similar_rows(model, n, hidden, items)
        return
    batches = similar_batches_ivf(model.item_factors, n + SIMILAR_MARGIN, hidden, queries=items)
    yield from _rescored(batches, model.item_factors, n)


SIMILAR_MARGIN = 4
"""Neighbours fetched beyond the ``n`` kept, so that re-scoring (:func:`_rescored`) decides the last places."""


def exact_similar_rows(
    model: AlternatingLeastSquares, n: int, hidden: np.ndarray, items: np.ndarray | None = None
) -> Iterator[SimilarRows]:
    """:func:`similar_item_rows` with every pair scored: the job's lists of a small catalogue, and the API's list
    of an item the job left to compute on request (:func:`similar_of`)."""
    return _rescored(similar_batches(model, n + SIMILAR_MARGIN, hidden, items=items), model.item_factors, n)


def similar_of(model: AlternatingLeastSquares, items: np.ndarray, n: int, hidden: np.ndarray) -> SimilarRows:
    """:func:`exact_similar_rows` of a few items in this thread (the API's on-request path)."""
    batch = similar_rows(model, np.asarray(items, dtype=np.int64), n + SIMILAR_MARGIN, hidden if len(hidden) else None)
    return next(_rescored(iter([batch]), model.item_factors, n))


def _rescored(
    batches: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]], factors: np.ndarray, n: int, chunk: int = 1_000
) -> Iterator[SimilarRows]:
    """Top-k batches with every kept pair's cosine computed again in float64, pair by pair, re-ranked and cut to
    ``n``. BLAS's float32 scores of one pair differ in the last bits with the batch's shape, which would let a
    precomputed list and one computed on request for a single item round apart; these do not depend on it."""
    for rows, ids, scores in batches:
        for at in range(0, len(rows), chunk):
            r, i = rows[at : at + chunk], ids[at : at + chunk]
            keep = (i >= 0) & np.isfinite(scores[at : at + chunk]) & (scores[at : at + chunk] > FILTERED_SCORE)
            i = np.where(keep, i, 0)
            exact = np.where(keep, _cosines(factors, r, i), -np.inf)
            order = np.argsort(-exact, axis=1, kind="stable")[:, :n]
            i, exact, keep = (np.take_along_axis(a, order, axis=1) for a in (i, exact, keep))
            yield r, i, np.round(np.where(keep, exact, 0.0), 5), keep


def _cosines(factors: np.ndarray, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Cosine of each item ``rows[b]`` with each ``ids[b, j]``, in float64 (0 with a zero vector)."""
    query = factors[rows].astype(np.float64)
    others = factors[ids].astype(np.float64)
    dots = np.einsum("bf,bnf->bn", query, others)
    norms = np.sqrt(np.einsum("bf,bf->b", query, query))[:, None] * np.sqrt(np.einsum("bnf,bnf->bn", others, others))
    return dots / np.maximum(norms, 1e-10)


def similar_items(
    model: AlternatingLeastSquares, inter: Interactions, n: int, hidden: np.ndarray, exact_max_items: int = 20_000
) -> Iterator[tuple[str, Ranked]]:
    """:func:`similar_item_rows` as (item id, ranked list) pairs."""
    for rows, ids, scores, keep in similar_item_rows(model, inter, n, hidden, exact_max_items):
        names, values = inter.item_ids[ids].tolist(), scores.tolist()
        ranked = [[(i, s) for i, s, k in zip(n_, v, row) if k] for n_, v, row in zip(names, values, keep.tolist())]
        yield from zip(inter.item_ids[rows].tolist(), ranked)


def bestsellers(
    events: pa.Table, items: pa.Table, window_days: int, as_of: datetime, n: int
) -> dict[str | None, Ranked]:
    """Most bought items in the last ``window_days``, overall (key None) and per category.

    Score = distinct buyers in the window; ties go to items more users interacted with in any way, then item id.
    A shop (or category) with no purchases in the window is ranked by interacting users alone.
    """
    con = _con(ev=events, cat=items)
    rows = con.execute(
        """
        WITH recent AS (
          SELECT * FROM ev
          WHERE timestamp > CAST(? AS TIMESTAMP) - to_days(CAST(? AS INTEGER)) AND timestamp <= ?),
        scored AS (
          SELECT item_id, count(DISTINCT user_id) FILTER (WHERE event_type = 'purchase') AS buyers,
                 count(DISTINCT user_id) AS users
          FROM recent GROUP BY item_id),
        joined AS (
          SELECT s.item_id, cat.category, s.buyers + s.users / (1.0 + max(s.users) OVER ()) AS score
          FROM scored s JOIN cat USING (item_id) WHERE cat.available),
        ranked AS (
          SELECT *, row_number() OVER (ORDER BY score DESC, item_id) AS g,
                    row_number() OVER (PARTITION BY category ORDER BY score DESC, item_id) AS c
          FROM joined)
        SELECT item_id, category, score, g, c FROM ranked WHERE g <= ? OR (c <= ? AND category IS NOT NULL)
        ORDER BY score DESC, item_id
        """,
        [as_of, window_days, as_of, n, n],
    ).fetchall()
    out: dict[str | None, Ranked] = {None: []}
    for item_id, category, score, g, c in rows:
        if g <= n:
            out[None].append((item_id, round(float(score), 5)))
        if category is not None and c <= n:
            out.setdefault(category, []).append((item_id, round(float(score), 5)))
    return out


def new_arrivals(
    events: pa.Table, items: pa.Table, window_days: int, as_of: datetime, n: int, weights: dict[str, float]
) -> Ranked:
    """Available items first seen in the last ``window_days``, ranked by early traction.

    Traction = weighted interactions per day since arrival (at least one day), so a two-day-old item with ten
    purchases outranks a month-old item with the same ten. Items nobody touched yet follow, newest first.
    """
    con = _con(
        ev=events, cat=items, w=pa.table({"event_type": list(weights), "weight": [float(v) for v in weights.values()]})
    )
    rows = con.execute(
        """
        WITH fresh AS (
          SELECT item_id, created_at FROM cat
          WHERE available AND created_at > CAST(? AS TIMESTAMP) - to_days(CAST(? AS INTEGER)) AND created_at <= ?),
        traction AS (
          SELECT f.item_id, f.created_at, coalesce(sum(w.weight), 0) AS weight
          FROM fresh f LEFT JOIN ev ON ev.item_id = f.item_id AND ev.timestamp <= ? LEFT JOIN w USING (event_type)
          GROUP BY f.item_id, f.created_at)
        SELECT item_id, weight / greatest(epoch(CAST(? AS TIMESTAMP)) - epoch(created_at), 86400.0) * 86400.0 AS score
        FROM traction ORDER BY score DESC, created_at DESC, item_id LIMIT ?
        """,
        [as_of, window_days, as_of, as_of, as_of, n],
    ).fetchall()
    return [(i, round(float(s), 5)) for i, s in rows]
