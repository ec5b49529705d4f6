"""Next likely purchase: which previously bought items are due again, blended with discovery from ALS."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.special import ndtr

from .lists import Ranked


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
    con = duckdb.connect()
    con.register("p", purchases)
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
