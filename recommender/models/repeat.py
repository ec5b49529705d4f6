"""The repeat-purchase model: which previously bought items each customer is due to buy again, and when.

How items due again are blended with discovery from ALS is the serving policy
(:mod:`recommender.serving.policy`).

The repeat model scores every (customer, previously bought item) pair with the probability that the customer buys
the item again within the next ``horizon_days``. It combines three things the next-basket literature found to
matter (personal frequency with recency, item repeat propensity, repurchase rhythm) and the season:

``freq``
    How often the customer buys it: the recency-weighted share of the customer's purchase days that contained
    the item (each day weighs ``0.5 ** (age / half_life_days)``), shrunk towards the item's repeat propensity
    (the share of all purchases of the item that the same customer followed with another one) with weight
    ``item_prior_weight`` days. A pair bought on every recent visit approaches 1; a one-off of an item that
    nobody re-buys approaches 0. This alone is the time-decayed personal frequency of the literature.
``rhythm``
    When: the repurchase gap is modelled as a gamma distribution with mean ``gap`` (the customer's own mean
    gap, shrunk towards the item's median gap across customers with ``gap_prior_weight`` gaps) and a coefficient
    of variation from the customer's own gaps, shrunk towards the item's typical one (and that towards 1,
    i.e. no rhythm). ``rhythm = (P(gap ends within the horizon | it has lasted the days since the last
    purchase) / P(same for a memoryless buyer with that mean gap)) ** (rhythm_weight * regularity)`` with
    ``regularity = max(0, 1 - cv / regular_cv)``: exactly 1 for irregular buying (a frequent item is never
    zeroed out for being irregular), far below 1 right after a purchase of a regularly bought item, above 1 when
    it is due.
``trend``
    In season: ``((recent buyers + trend_prior) / (expected recent buyers + trend_prior)) ** trend_weight``, where
    recent buyers are the item's distinct buyers in the last ``trend_days`` and expected ones its buyers over the
    whole log at an even pace (Christmas goods in December, barbecue in June).
``fade`` (off by default)
    With ``overdue_after`` set, a pair not bought for more than that many gaps fades out as
    ``exp(-(since / gap - overdue_after) / 2)``; the recency weighting of ``freq`` already does most of this.

The purchase rate per visit ``freq * rhythm * trend * fade`` times the customer's expected visits in the horizon
(``horizon_days / their mean days between purchase days``) gives a Poisson rate ``r``; the score is
``P(bought within the horizon) = 1 - exp(-r)``. The expected date shown with "due again" is the last purchase plus
``gap`` (today if that has passed). Items nobody ever bought twice (durables) get no row at all.

Defaults were chosen on a validation cut-off (see ``docs/QUALITY.md``, next-basket section).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.special import gammaincc

DUE_AGAIN, GOES_WITH = "due_again", "goes_with_your_purchases"


@dataclass(frozen=True, slots=True)
class NextPick:
    """One next-purchase pick with the reason an e-mail can show."""

    item_id: str
    score: float
    reason: str  # "due_again" or "goes_with_your_purchases"
    due: str | None = None  # expected date (ISO) for "due_again"

    def as_dict(self) -> dict[str, object]:
        return {"item_id": self.item_id, "score": self.score, "reason": self.reason, "due": self.due}

    def as_pair(self) -> tuple[str, float]:
        return self.item_id, self.score


# ``days`` and ``pair`` are read by several parts of the query: MATERIALIZED computes each once (DuckDB would
# otherwise inline them into every reader).
_PAIRS_SQL = """
WITH days AS MATERIALIZED (
  SELECT DISTINCT user_id, item_id, CAST(timestamp AS DATE) AS d FROM p WHERE timestamp <= CAST($as_of AS TIMESTAMP)),
gaps AS (
  SELECT user_id, item_id, d, date_diff('day', lag(d) OVER (PARTITION BY user_id, item_id ORDER BY d), d) AS gap
  FROM days),
pair AS MATERIALIZED (
  SELECT user_id, item_id, count(*) AS n, max(d) AS last, avg(gap) AS own_gap, stddev_pop(gap) AS own_sd,
         sum(pow(0.5, date_diff('day', d, CAST($as_of AS DATE)) / $half_life)) AS decayed
  FROM gaps GROUP BY user_id, item_id),
span AS (SELECT greatest(date_diff('day', min(d), CAST($as_of AS DATE)), 1) AS days FROM days),
recent AS (
  SELECT item_id, count(DISTINCT user_id) AS recent_buyers FROM p
  WHERE timestamp > CAST($as_of AS TIMESTAMP) - to_days(CAST(ceil($trend_days) AS INTEGER))
    AND timestamp <= CAST($as_of AS TIMESTAMP)
  GROUP BY item_id),
item AS (
  SELECT item_id, count(*) AS buyers, sum(n - 1) / sum(n) AS propensity, median(own_gap) AS item_gap,
         median(CASE WHEN n >= 3 THEN own_sd / greatest(own_gap, 1) END) AS item_cv,
         count(*) FILTER (WHERE n >= 3) AS cv_buyers
  FROM pair GROUP BY item_id),
visit AS (SELECT DISTINCT user_id, d FROM days),
usr AS (
  SELECT user_id, count(*) AS visits, date_diff('day', min(d), max(d)) / greatest(count(*) - 1, 1) AS visit_gap,
         sum(pow(0.5, date_diff('day', d, CAST($as_of AS DATE)) / $half_life)) AS decayed_visits
  FROM visit GROUP BY user_id)
SELECT user_id, item_id, n, last, own_gap, own_sd, decayed, propensity, item_gap, item_cv, cv_buyers,
       visits, visit_gap, decayed_visits, date_diff('day', last, CAST($as_of AS DATE)) AS since,
       coalesce(recent_buyers, 0) AS recent_buyers, buyers * least($trend_days / span.days, 1.0) AS expected_buyers
FROM pair JOIN item USING (item_id) JOIN usr USING (user_id) LEFT JOIN recent USING (item_id) CROSS JOIN span
WHERE propensity > 0
ORDER BY user_id, item_id
"""


def repeat_candidates(
    events: pa.Table,
    as_of: datetime,
    horizon_days: float = 30,
    *,
    half_life_days: float = 90.0,
    item_prior_weight: float = 1.0,
    gap_prior_weight: float = 2.0,
    cv_prior_weight: float = 3.0,
    item_cv_prior_weight: float = 1.0,
    rhythm_weight: float = 1.0,
    regular_cv: float = 0.5,
    overdue_after: float | None = None,
    trend_days: float = 30.0,
    trend_weight: float = 0.25,
    trend_prior: float = 5.0,
) -> RepeatIndex:
    """Per customer and previously bought item: the probability it is bought again within ``horizon_days``.

    Only purchases up to ``as_of`` count. See the module docstring for the model; every keyword is a prior
    strength or decay of it (defaults tuned on a validation cut-off of real logs).
    """
    if horizon_days <= 0 or half_life_days <= 0:
        raise ValueError("horizon_days and half_life_days must be positive")
    purchases = events.filter(pc.equal(events["event_type"], "purchase"))
    users, user_ids = _sorted_codes(purchases["user_id"])
    items, item_ids = _sorted_codes(purchases["item_id"])
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.register("p", pa.table({"user_id": users, "item_id": items, "timestamp": purchases["timestamp"]}))
    cols = con.execute(
        _PAIRS_SQL, {"as_of": as_of, "half_life": float(half_life_days), "trend_days": float(trend_days)}
    ).fetchnumpy()
    cols["user_id"], cols["item_id"] = user_ids[cols["user_id"]], item_ids[cols["item_id"]]
    if len(cols["n"]) == 0:
        empty = np.array([], dtype=object)
        return RepeatIndex(empty, empty, np.array([], dtype=float), np.array([], dtype="datetime64[D]"))

    def arr(name: str) -> np.ndarray:
        return np.asarray(cols[name], dtype=float)  # SQL NULL -> nan

    n, since, horizon = arr("n"), arr("since"), float(horizon_days)
    own_gap = np.nan_to_num(arr("own_gap"), nan=0.0)
    repeats = n - 1  # observed gaps of the pair

    # How often: recency-weighted share of the customer's purchase days with the item, shrunk to the item's propensity.
    freq = (arr("decayed") + item_prior_weight * arr("propensity")) / (arr("decayed_visits") + item_prior_weight)

    # When: gamma-distributed gaps; mean and coefficient of variation shrunk from the pair to the item to "no rhythm".
    gap = np.maximum((repeats * own_gap + gap_prior_weight * arr("item_gap")) / (repeats + gap_prior_weight), 1.0)
    cv_buyers = arr("cv_buyers")
    item_cv = (cv_buyers * np.nan_to_num(arr("item_cv"), nan=1.0) + item_cv_prior_weight) / (
        cv_buyers + item_cv_prior_weight
    )
    own_cv = np.nan_to_num(arr("own_sd") / np.maximum(own_gap, 1.0), nan=1.0)
    own_weight = np.maximum(n - 2, 0)  # a spread needs two gaps at least
    cv = np.clip((own_weight * own_cv + cv_prior_weight * item_cv) / (own_weight + cv_prior_weight), 0.1, 3.0)
    rhythm = _rhythm(cv, gap, since, horizon, rhythm_weight, regular_cv)
    fade = 1.0 if overdue_after is None else np.exp(-np.maximum(since / gap - overdue_after, 0.0) / 2.0)

    # In season: items bought by more customers lately than their long-run pace get a boost (and vice versa).
    trend = ((arr("recent_buyers") + trend_prior) / (arr("expected_buyers") + trend_prior)) ** trend_weight

    visits_in_horizon = horizon / np.maximum(arr("visit_gap"), 1.0)
    single = arr("visits") < 2  # one purchase day: no visit rhythm of their own yet
    if single.any():
        typical = float(np.median(arr("visit_gap")[~single])) if (~single).any() else horizon
        visits_in_horizon[single] = horizon / max(typical, 1.0)
    score = 1.0 - np.exp(-visits_in_horizon * freq * rhythm * trend * fade)

    due = cols["last"].astype("datetime64[D]") + np.round(gap).astype("timedelta64[D]")
    due = np.maximum(due, np.datetime64(as_of.date()))  # overdue: expected from today on
    return RepeatIndex(np.asarray(cols["user_id"], dtype=object), np.asarray(cols["item_id"], dtype=object), score, due)


def _rhythm(
    cv: np.ndarray, gap: np.ndarray, since: np.ndarray, horizon: float, rhythm_weight: float, regular_cv: float
) -> np.ndarray:
    """The ``rhythm`` factor of each pair (see the module docstring): how much likelier a gamma-distributed gap with
    mean ``gap`` and coefficient of variation ``cv`` ends within the horizon, ``since`` days after the last purchase,
    than a memoryless one, raised to ``rhythm_weight * regularity``."""
    # Only regular buying has a rhythm worth trusting: full weight at cv 0, none from cv >= regular_cv on.
    regularity = np.clip(1.0 - cv / regular_cv, 0.0, 1.0)
    exponent = rhythm_weight * regularity
    rhythm = np.ones_like(gap)  # x ** 0 is exactly 1: the gamma tails are computed only where the exponent is not 0
    timed = np.flatnonzero(exponent != 0)
    shape, gap_t, since_t = 1.0 / cv[timed] ** 2, gap[timed], since[timed]
    survive_now = gammaincc(shape, shape * since_t / gap_t)
    survive_end = gammaincc(shape, shape * (since_t + horizon) / gap_t)
    due_within = np.where(survive_now > 1e-12, (survive_now - survive_end) / np.maximum(survive_now, 1e-12), 1.0)
    memoryless = 1.0 - np.exp(-horizon / gap_t)
    rhythm[timed] = np.clip(due_within / memoryless, 1e-6, None) ** exponent[timed]
    return rhythm


def _sorted_codes(column: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """Each value's position among the column's distinct values sorted (int32), and those values (object array):
    the query groups, windows and sorts by integers instead of strings (a third faster on complete-journey), in
    the same order."""
    distinct = pc.unique(column)
    distinct = distinct.take(pc.sort_indices(distinct))
    return pc.index_in(column, value_set=distinct).cast(pa.int32()), np.asarray(distinct.to_pylist(), dtype=object)


class RepeatIndex:
    """Repeat-purchase scores of every (customer, item) pair, looked up by customer."""

    def __init__(self, user_ids: np.ndarray, item_ids: np.ndarray, scores: np.ndarray, due: np.ndarray) -> None:
        self.user_ids, self.item_ids, self.scores, self.due = user_ids, item_ids, scores, due
        bounds = np.flatnonzero(np.r_[True, user_ids[1:] != user_ids[:-1], True]) if len(user_ids) else np.array([0])
        self._spans = {user_ids[b]: (b, e) for b, e in itertools.pairwise(bounds)} if len(user_ids) else {}

    def __len__(self) -> int:
        return len(self.scores)

    def users(self) -> list[str]:
        """Customers with at least one item that may be bought again."""
        return list(self._spans)

    def due_items(self, user_id: str, limit: int, min_score: float = 0.05) -> list[NextPick]:
        """The customer's items most likely bought again within the horizon, best first (ties by item id)."""
        b, e = self._spans.get(user_id, (0, 0))
        if limit <= 0 or e <= b:
            return []
        order = b + np.lexsort((self.item_ids[b:e], -self.scores[b:e]))[:limit]
        order = order[self.scores[order] >= min_score]
        # Whole arrays to Python values at once: a numpy scalar (above all a datetime64's str) per pick costs
        # microseconds, and every customer with purchases asks for their picks each night.
        items, scores = self.item_ids[order].tolist(), self.scores[order].tolist()
        due = np.datetime_as_string(self.due[order], unit="D").tolist()
        return [NextPick(i, round(s, 5), DUE_AGAIN, d) for i, s, d in zip(items, scores, due)]


class DueSource(Protocol):
    """What the serving policy needs of the repeat model: a customer's items due again, best first
    (:class:`RepeatIndex`, or one customer's kept due items when lists are computed on request)."""

    def due_items(self, user_id: str, limit: int, min_score: float = 0.05) -> list[NextPick]: ...


Pick = NextPick | tuple[str, float]
"""A blended pick: a due item, or a discovery ``(item_id, score)`` pair exactly as the explore list gave it."""


def pick_id(pick: Pick) -> str:
    return pick.item_id if isinstance(pick, NextPick) else pick[0]


def pick_pair(pick: Pick) -> tuple[str, float]:
    """[item_id, score], as personal lists are published."""
    return (pick.item_id, pick.score) if isinstance(pick, NextPick) else (pick[0], pick[1])


def as_next_pick(pick: Pick) -> NextPick:
    """A discovery pair wrapped as a "goes with your purchases" NextPick; due items as they are."""
    return pick if isinstance(pick, NextPick) else NextPick(pick[0], pick[1], GOES_WITH)


def pick_row(pick: Pick) -> tuple[str, float, str, str | None]:
    """(item id, score, reason, due): :func:`pick_dict`'s values as a tuple (:func:`cache.codec.encode_pick_rows`)."""
    if isinstance(pick, NextPick):
        return pick.item_id, pick.score, pick.reason, pick.due
    return pick[0], pick[1], GOES_WITH, None


def pick_dict(pick: Pick) -> dict[str, object]:
    """The published next-purchase entry."""
    if isinstance(pick, NextPick):
        return pick.as_dict()
    return {"item_id": pick[0], "score": pick[1], "reason": GOES_WITH, "due": None}
