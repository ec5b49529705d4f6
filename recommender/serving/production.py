"""The personal list exactly as the shop serves it, behind the interface every model shares.

So the evaluation, the promotion gate and tuning score what the job publishes by calling the serving policy
(:func:`recommender.serving.policy.production_picks`), never a copy: customers with a training event get items due
again from the repeat model blended with ALS picks they have not bought; everyone else gets the overall bestsellers
(the API's answer to an unknown visitor).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from recommender.config import ModelSettings
from recommender.models.als_recommender import AlsRecommender
from recommender.models.base import Recommender
from recommender.models.repeat import RepeatIndex, pick_id, repeat_candidates
from recommender.serving.lists import bestsellers
from recommender.serving.policy import production_picks


class ProductionModel(Recommender):
    """The served personal list (model name ``production`` in ``reco evaluate``)."""

    def __init__(self, settings: ModelSettings | None = None) -> None:
        self.settings = settings or ModelSettings()
        self.als: AlsRecommender | None = None
        self._repeats: RepeatIndex | None = None
        self._train: pa.Table | None = None
        self._items: pa.Table | None = None
        self._known: frozenset[str] = frozenset()
        self._best: dict[int, list[str]] = {}

    def fit(
        self,
        train: pa.Table,
        *,
        items: pa.Table,
        als: AlsRecommender | None = None,
        repeats: RepeatIndex | None = None,
        **kw: Any,
    ) -> ProductionModel:
        """Fit ALS and the repeat model on ``train``; ``als`` and ``repeats``, fitted on the same events and
        settings, are reused instead of fitted again."""
        s = self.settings
        self.als = AlsRecommender(s.als, s.weights.as_dict(), s.half_life_days).fit(train, items=items, als=als)
        self._repeats = repeats or repeat_candidates(train, self.als.fitted.as_of, s.lists.next_purchase_horizon_days)
        self._train, self._items = train, items
        self._known = frozenset(pc.unique(train["user_id"]).to_pylist())
        self._best = {}
        return self

    @property
    def repeats(self) -> RepeatIndex:
        """The fitted repeat model (raises before :meth:`fit`)."""
        if self._repeats is None:
            raise RuntimeError("ProductionModel is not fitted")
        return self._repeats

    def recommend(self, user_ids: Iterable[str], k: int) -> dict[str, list[str]]:
        return self.recommend_excluding(list(dict.fromkeys(user_ids)), k, {})

    def recommend_excluding(
        self, user_ids: Sequence[str], k: int, exclude: Mapping[str, Collection[str]]
    ) -> dict[str, list[str]]:
        if self.als is None or self._repeats is None:
            raise RuntimeError("ProductionModel is not fitted")
        fit = self.als.fitted
        warm = [u for u in user_ids if u in self._known]
        skip = fit.bought if not exclude else ((fit.bought + self.als.exclusion_matrix(exclude)) > 0).tocsr()
        return self._lists(user_ids, k, exclude, self.als.ranked(warm, k, skip), self.settings.repeat_share)

    def at_shares(
        self, user_ids: Sequence[str], k: int, shares: Sequence[float], explore: Mapping[str, Sequence[Any]]
    ) -> dict[float, dict[str, list[str]]]:
        """:meth:`recommend` at each repeat share of ``shares``, from one ALS ranking: ``explore``, each known
        customer's top-``k`` ALS picks without the items they bought (``AlsRecommender.ranked(users, k, bought)``,
        which tuning scores on its own too)."""
        if self.als is None or self._repeats is None:
            raise RuntimeError("ProductionModel is not fitted")
        users = list(dict.fromkeys(user_ids))
        return {share: self._lists(users, k, {}, explore, share) for share in shares}

    def _lists(
        self,
        user_ids: Sequence[str],
        k: int,
        exclude: Mapping[str, Collection[str]],
        explore: Mapping[str, Sequence[Any]],
        share: float,
    ) -> dict[str, list[str]]:
        """The served lists: known customers' from the serving policy with their ALS picks ``explore``, the
        bestsellers for the others; a list shorter than ``k`` is topped up with the bestsellers, as the API does
        (a known customer can have no picks at all: one whose only events are returns)."""
        fit = self.als.fitted  # type: ignore[union-attr]
        warm = [u for u in user_ids if u in self._known]
        gone = frozenset(fit.inter.item_ids[fit.hidden].tolist()) if len(fit.hidden) else frozenset()
        out = {
            u: [
                pick_id(p)
                for p in production_picks(
                    self._repeats, u, explore.get(u, []), k, share, gone | set(exclude.get(u, ()))
                )
            ]
            for u in warm
        }
        for u in user_ids:
            out[u] = self.topped_up(out.get(u, []), k, exclude.get(u, ()))
        return out

    def topped_up(self, picks: list[str], k: int, drop: Collection[str] = ()) -> list[str]:
        """``picks`` followed by the bestsellers not among them nor in ``drop``, ``k`` items at most (the API's
        top-up of a short list; the whole list of a customer the model does not know)."""
        if len(picks) >= k:
            return picks[:k]
        taken = set(picks) | set(drop)
        more = [i for i in self._bestsellers(k + len(taken)) if i not in taken]
        return (picks + more)[:k]

    def _bestsellers(self, k: int) -> list[str]:
        """The overall bestsellers at the newest training event, ``k`` of them (the cold-start answer)."""
        if k not in self._best:
            s, fit = self.settings, self.als.fitted  # type: ignore[union-attr]
            ranked = bestsellers(self._train, self._items, s.lists.bestseller_days, fit.as_of, k)[None]
            self._best[k] = [i for i, _ in ranked]
        return self._best[k]
