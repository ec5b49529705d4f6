"""Session-aware picks: fold a visitor's live events into the published ALS item factors.

A visitor the model has never seen (or a known one with events since the last run) gets a user vector computed on
the fly from their live events, exactly as implicit's ``recalculate_user`` does (one least-squares solve against
the fixed item factors), then scored against every item. The model object is built once per published version.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from recommender.serving.lists import Ranked

LiveEvent = tuple[str, str, datetime]  # (event_type, item_id, time)


class SessionModel:
    """Item factors of one published version, ready for fold-in."""

    def __init__(
        self,
        item_ids: Sequence[str],
        item_factors: np.ndarray,
        *,
        regularization: float,
        alpha: float,
        weights: dict[str, float],
        half_life_days: float,
        hidden: Sequence[str] = (),
    ) -> None:
        self.item_ids = list(item_ids)
        self.index = {item: j for j, item in enumerate(self.item_ids)}
        self.weights = weights
        self.half_life_days = half_life_days
        self.hidden = np.array(sorted(self.index[i] for i in hidden if i in self.index), dtype=np.int32)
        factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        # One thread: a single fold-in is tiny, and spinning up a thread pool per request costs more than it saves.
        with threadpool_limits(1, "blas"):
            self.model = AlternatingLeastSquares(
                factors=factors.shape[1], regularization=regularization, alpha=alpha, num_threads=1
            )
        self.model.item_factors = factors
        self.model.user_factors = np.zeros((1, factors.shape[1]), dtype=np.float32)
        _ = self.model.YtY  # computed once here, not per request

    def confidence_row(self, events: Sequence[LiveEvent], now: datetime) -> sp.csr_matrix:
        """The visitor's events weighted and decayed the same way the job weights history."""
        confidence: dict[int, float] = {}
        for kind, item, ts in events:
            j = self.index.get(item)
            weight = self.weights.get(kind, 0.0)
            if j is not None and weight > 0:
                age_days = max((now - ts).total_seconds(), 0.0) / 86400.0
                confidence[j] = confidence.get(j, 0.0) + weight * 0.5 ** (age_days / self.half_life_days)
        cols = np.array(sorted(confidence), dtype=np.int32)
        values = np.array([confidence[j] for j in cols], dtype=np.float32)
        return sp.csr_matrix((values, cols, np.array([0, len(cols)], dtype=np.int32)), shape=(1, len(self.item_ids)))

    def recommend(self, events: Sequence[LiveEvent], n: int, now: datetime, exclude: Sequence[str] = ()) -> Ranked:
        """Top-n items for the visitor's live events, leaving out the items of those events and ``exclude``;
        [] when none of their items is known to the model."""
        row = self.confidence_row(events, now)
        if row.nnz == 0:
            return []
        skip = {self.index[i] for i in exclude if i in self.index}
        hidden = np.union1d(self.hidden, np.fromiter(skip, dtype=np.int32, count=len(skip))).astype(np.int32)
        n = min(n, len(self.item_ids) - len(hidden) - row.nnz)
        if n <= 0:
            return []
        ids, scores = self.model.recommend(
            0,
            row,
            N=n,
            recalculate_user=True,
            filter_already_liked_items=True,
            filter_items=hidden if len(hidden) else None,
        )
        return [(self.item_ids[j], round(float(s), 5)) for j, s in zip(ids, scores) if j >= 0 and np.isfinite(s)]


def reciprocal_rank_fusion(personal: Ranked, session: Ranked, n: int, k: float = 10.0) -> Ranked:
    """Merge a stored personal list with live session picks by reciprocal-rank fusion (equal weight)."""
    scores: dict[str, float] = {}
    for ranked in (personal, session):
        for rank, (item, _) in enumerate(ranked):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank + 1)
    best = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return [(item, round(score, 5)) for item, score in best]
