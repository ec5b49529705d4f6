"""The published lists: personal picks, bestsellers, new arrivals, similar items, next likely purchase.

Every list is a ranking of ``(item_id, score)`` pairs; keyed lists are yielded lazily so a shop with millions of
users is streamed to the cache in batches instead of being held in memory. Unavailable items never appear.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from scipy.special import ndtr
from implicit.cpu.als import AlternatingLeastSquares

from .model import recommend_batches, similar_batches
from .weighting import Interactions

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


def _ranked(ids: np.ndarray, scores: np.ndarray, item_ids: np.ndarray) -> Ranked:
    keep = (ids >= 0) & np.isfinite(scores)
    return [(item_ids[j], round(float(s), 5)) for j, s in zip(ids[keep], scores[keep])]


def personal_picks(
    model: AlternatingLeastSquares,
    inter: Interactions,
    n: int,
    exclude: sp.csr_matrix | None,
    hidden: np.ndarray,
) -> Iterator[tuple[str, Ranked]]:
    """ALS top-n for every user of the matrix, leaving out each user's ``exclude`` row (e.g. purchases)."""
    for rows, ids, scores in recommend_batches(model, exclude, n, hidden):
        for r, row_ids, row_scores in zip(rows, ids, scores):
            yield inter.user_ids[r], _ranked(row_ids, row_scores, inter.item_ids)


def similar_items(
    model: AlternatingLeastSquares, inter: Interactions, n: int, hidden: np.ndarray
) -> Iterator[tuple[str, Ranked]]:
    """Items whose ALS factors are closest (cosine) to each item's."""
    for rows, ids, scores in similar_batches(model, n, hidden):
        for r, row_ids, row_scores in zip(rows, ids, scores):
            yield inter.item_ids[r], _ranked(row_ids, row_scores, inter.item_ids)


def bestsellers(events: pa.Table, items: pa.Table, window_days: int, as_of: datetime, n: int) -> dict[str | None, Ranked]:
    """Most bought items in the last ``window_days``, overall (key None) and per category.

    Score = distinct buyers in the window; ties go to items more users interacted with in any way, then item id.
    A shop (or category) with no purchases in the window is ranked by interacting users alone.
    """
    con = _con(ev=events, cat=items)
    rows = con.execute(
        """
        WITH recent AS (SELECT * FROM ev WHERE timestamp > CAST(? AS TIMESTAMP) - to_days(CAST(? AS INTEGER)) AND timestamp <= ?),
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
    con = _con(ev=events, cat=items, w=pa.table({"event_type": list(weights), "weight": [float(v) for v in weights.values()]}))
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


@dataclass(frozen=True)
class NextPick:
    """One next-purchase pick with the reason an e-mail can show."""

    item_id: str
    score: float
    reason: str  # "due_again" or "goes_with_your_purchases"
    due: str | None = None  # expected date (ISO) for "due_again"

    def as_dict(self) -> dict[str, object]:
        return {"item_id": self.item_id, "score": self.score, "reason": self.reason, "due": self.due}


def repeat_candidates(events: pa.Table, as_of: datetime, horizon_days: int) -> "RepeatIndex":
    """Per customer and previously bought item: the probability it is bought again within the horizon.

    Per pair: purchase days n, last purchase, own mean gap (if n >= 2); per item: median gap across customers
    and the share of its buyers who ever bought it twice. Expected gap = own mean gap shrunk towards the item's
    median (the item counts as two observations); the gap is modelled as normal with sd = half the expected gap,
    and the score is P(repeat) * P(gap ends within the horizon | it has lasted the days since the last purchase).
    Items nobody ever bought twice (durables) get no row.
    """
    purchases = events.filter(pc.equal(events["event_type"], "purchase"))
    con = _con(p=purchases)
    cols = con.execute(
        """
        WITH days AS (SELECT DISTINCT user_id, item_id, CAST(timestamp AS DATE) AS d FROM p WHERE timestamp <= ?),
        pair AS (
          SELECT user_id, item_id, count(*) AS n, max(d) AS last,
                 CASE WHEN count(*) > 1 THEN date_diff('day', min(d), max(d)) / (count(*) - 1.0) END AS own_gap
          FROM days GROUP BY user_id, item_id),
        item AS (
          SELECT item_id, median(own_gap) AS item_gap, avg(CASE WHEN n > 1 THEN 1.0 ELSE 0.0 END) AS repeat_share,
                 count(*) AS buyers
          FROM pair GROUP BY item_id)
        SELECT user_id, item_id, n,
               greatest(coalesce(((n - 1) * own_gap + 2 * item_gap) / (n + 1.0), item_gap), 1.0) AS gap,
               CASE WHEN n > 1 THEN n / (n + 1.0) ELSE (repeat_share * buyers + 1) / (buyers + 2.0) END AS p_repeat,
               date_diff('day', last, CAST(? AS DATE)) AS since, last
        FROM pair JOIN item USING (item_id) WHERE repeat_share > 0
        ORDER BY user_id, item_id
        """,
        [as_of, as_of],
    ).fetchnumpy()
    gap = cols["gap"].astype(float)
    since = cols["since"].astype(float)
    sd = np.maximum(0.5 * gap, 1.0)
    survive = 1.0 - ndtr((since - gap) / sd)  # P(gap > since)
    within = ndtr((since + horizon_days - gap) / sd) - ndtr((since - gap) / sd)
    p_due = np.where(survive > 1e-9, within / np.maximum(survive, 1e-9), 1.0)
    # A pair long overdue (more than two gaps) has probably been given up: fade it out.
    fade = np.exp(-np.maximum(since - 2 * gap, 0) / gap)
    score = cols["p_repeat"].astype(float) * p_due * fade
    due = cols["last"].astype("datetime64[D]") + np.round(gap).astype("timedelta64[D]")
    due = np.maximum(due, np.datetime64(as_of.date()))  # overdue: expected from today on
    return RepeatIndex(cols["user_id"], cols["item_id"], score, due)


class RepeatIndex:
    """Repeat-purchase scores of every (customer, item) pair, looked up by customer."""

    def __init__(self, user_ids: np.ndarray, item_ids: np.ndarray, scores: np.ndarray, due: np.ndarray) -> None:
        self.item_ids, self.scores, self.due = item_ids, scores, due
        bounds = np.flatnonzero(np.r_[True, user_ids[1:] != user_ids[:-1], True]) if len(user_ids) else np.array([0])
        self._spans = {user_ids[b]: (b, e) for b, e in zip(bounds[:-1], bounds[1:])} if len(user_ids) else {}

    def due_items(self, user_id: str, limit: int, min_score: float = 0.05) -> list[NextPick]:
        """The customer's items most likely bought again within the horizon, best first."""
        b, e = self._spans.get(user_id, (0, 0))
        order = b + np.argsort(-self.scores[b:e], kind="stable")
        return [
            NextPick(self.item_ids[j], round(float(self.scores[j]), 5), "due_again", str(self.due[j]))
            for j in order[:limit]
            if self.scores[j] >= min_score
        ]


def next_purchase(repeats: RepeatIndex, user_id: str, explore: Ranked, n: int, explore_share: float = 0.3) -> list[NextPick]:
    """Blend items due again with ALS picks the customer has not bought ("goes with what you buy").

    At most ``n - ceil(explore_share * n)`` slots go to due items; the rest, and unused due slots, to ``explore``
    (the customer's ALS list without their purchases).
    """
    picks = repeats.due_items(user_id, max(0, n - int(math.ceil(explore_share * n))))
    taken = {p.item_id for p in picks}
    for item_id, score in explore:
        if len(picks) >= n:
            break
        if item_id not in taken:
            picks.append(NextPick(item_id, score, "goes_with_your_purchases"))
    return picks
