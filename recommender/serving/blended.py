"""The learned blend as the shop serves it, behind the interface every model shares (model ``blend`` in
``reco evaluate``).

It does what ``reco train`` does: learn the ranker on the last ``window_days`` of the training events
(:func:`recommender.evaluation.blend_learning.learn_blend`, the window inside the training period; with
``blend_windows`` 2 also on the window before it), and when it beats
the current policy there, rank every source's candidates at the end of the training events for the customers who
bought within ``blend_days`` of it (the job precomputes theirs); everyone else, and every customer when the blend
lost, gets the current policy's list (:class:`recommender.serving.production.ProductionModel`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from recommender.config import ModelSettings
from recommender.data.schema import PURCHASE
from recommender.evaluation.blend_learning import BlendOutcome, blended, earlier_window, learn_blend
from recommender.evaluation.split import span_days, time_split
from recommender.models.als_recommender import AlsRecommender
from recommender.models.blend_candidates import CandidateSources
from recommender.serving.production import ProductionModel


class BlendModel(ProductionModel):
    """The served personal list with the learned blend (falls back to the policy as the job does)."""

    def __init__(self, settings: ModelSettings | None = None, window_days: int = 30) -> None:
        super().__init__(settings)
        self.window_days = window_days
        self.outcome: BlendOutcome | None = None
        self._sources: CandidateSources | None = None
        self._blend_users: frozenset[str] = frozenset()

    def fit(self, train: pa.Table, *, items: pa.Table, als: AlsRecommender | None = None, **kw: Any) -> BlendModel:
        """As the job: ``share_is_rule`` False when self-tuning chose the repeat share (the ranker may then order
        bought and new items its own way; see :func:`recommender.evaluation.blend_learning.learn_blend`)."""
        super().fit(train, items=items, als=als, repeats=kw.get("repeats"))
        s = self.settings
        if span_days(train) < 2 * self.window_days:  # as the job: no window to learn on, the policy serves
            self.outcome = BlendOutcome(None, False, {"skipped": f"less than {2 * self.window_days} days of events"})
            return self
        inner = time_split(train, test_days=self.window_days)
        inner_als = AlsRecommender(s.als, s.weights.as_dict(), s.half_life_days).fit(inner.train, items=items)
        self.outcome = learn_blend(
            inner.train,
            inner.test,
            items,
            inner_als.fitted,
            s,
            max_customers=s.lists.blend_customers,
            share_is_rule=kw.get("share_is_rule", True),
            earlier=lambda: earlier_window(inner.train, self.window_days, items, s),
        )
        if self.outcome.chosen:
            fit = self.als.fitted  # type: ignore[union-attr]
            self._sources = CandidateSources(train, items, fit, self.repeats)
            self._blend_users = recent_buyers(train, fit.as_of, s.lists.blend_days)
        return self

    def recommend_excluding(
        self, user_ids: Sequence[str], k: int, exclude: Mapping[str, Collection[str]]
    ) -> dict[str, list[str]]:
        out = super().recommend_excluding(user_ids, max(k, self.settings.lists.list_size), exclude)
        users = [u for u in user_ids if u in self._blend_users]
        if self.outcome is None or self.outcome.ranker is None or self._sources is None or not users:
            return {u: r[:k] for u, r in out.items()}
        fallback = {u: [(i, 0.0) for i in out.get(u, [])] for u in users}  # with_fallback wraps the ones it takes
        lists = blended(
            self._sources, self.outcome.ranker, users, fallback, k + max(map(len, exclude.values()), default=0)
        )
        for u in users:
            drop = exclude.get(u, ())
            out[u] = self.topped_up([p.item_id for p in lists[u] if p.item_id not in drop], k, drop)
        return {u: r[:k] for u, r in out.items()}


def recent_buyers(events: pa.Table, as_of: Any, days: int) -> frozenset[str]:
    """Customers with a purchase within ``days`` of ``as_of``."""
    since = pa.scalar(as_of - timedelta(days=days), pa.timestamp("us"))
    rows = events.filter(pc.and_(pc.equal(events["event_type"], PURCHASE), pc.greater(events["timestamp"], since)))
    return frozenset(pc.unique(rows["user_id"]).to_pylist())
