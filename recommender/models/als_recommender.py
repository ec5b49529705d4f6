"""Implicit ALS behind the interface every model shares (:class:`recommender.models.base.Recommender`).

Fitted exactly as the nightly job fits it: the confidence matrix of :mod:`recommender.models.weighting` decayed from
the newest training event, :func:`recommender.models.als.fit_als`, unavailable items never listed, and the top-n
lists built by the same code the job publishes with (:func:`recommender.serving.lists.personal_picks_of`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares

from recommender.config import AlsParams, EventWeights
from recommender.models.als import fit_als
from recommender.models.base import Recommender
from recommender.models.weighting import (
    Interactions,
    build_interactions,
    interaction_matrix,
    latest_timestamp,
    purchase_matrix,
)
from recommender.serving.lists import Ranked, hidden_item_indices, personal_picks_of


@dataclass(frozen=True)
class AlsFit:
    """What one ALS fit leaves: the matrix with its id maps, the model, and the per-user filters."""

    inter: Interactions
    model: AlternatingLeastSquares
    bought: sp.csr_matrix
    """Items each user purchased (the matrix's maps)."""
    seen: sp.csr_matrix
    """Items each user viewed, carted or purchased."""
    hidden: np.ndarray
    """Matrix columns of unavailable items."""
    as_of: datetime


class AlsRecommender(Recommender):
    """ALS top-k per user the matrix knows; with ``filter_purchased`` without the items the user bought."""

    serves_unknown_users = False

    def __init__(
        self,
        als: AlsParams | None = None,
        weights: Mapping[str, float] | None = None,
        half_life_days: float = 60.0,
        *,
        filter_purchased: bool = False,
    ) -> None:
        self.als = als or AlsParams()
        self.weights = dict(weights) if weights is not None else EventWeights().as_dict()
        self.half_life_days = half_life_days
        self.filter_purchased = filter_purchased
        self._fit: AlsFit | None = None

    def fit(
        self,
        train: pa.Table,
        *,
        items: pa.Table | None = None,
        als: AlsRecommender | None = None,
        fit_model: Callable[[Interactions], AlternatingLeastSquares] | None = None,
        show_progress: bool = False,
        **kw: Any,
    ) -> AlsRecommender:
        """Fit on ``train`` (unavailable items of ``items`` are never listed). With ``als``, an ALS recommender
        already fitted on the same events and settings, reuse its fit instead of fitting again; ``fit_model``
        replaces the ALS fit from random factors (e.g. the gate's warm start, :mod:`recommender.models.warm_start`)."""
        if als is not None and als._fit is not None:
            self._fit = als._fit
            return self
        as_of = latest_timestamp(train)
        inter = build_interactions(train, self.weights, self.half_life_days, as_of)
        model = fit_model(inter) if fit_model else fit_als(inter.matrix, self.als, show_progress=show_progress)
        hidden = hidden_item_indices(items, inter) if items is not None else np.array([], dtype=np.int32)
        self._fit = AlsFit(inter, model, purchase_matrix(train, inter), interaction_matrix(train, inter), hidden, as_of)
        return self

    def refit(self, fit_model: Callable[[Interactions], AlternatingLeastSquares] | None = None) -> AlsRecommender:
        """The same matrices and filters with a new fit (``fit_model``, as for :meth:`fit`), this one's model let go
        of first: its factors may be the new fit's start (:func:`recommender.models.warm_start.fit_on`), never
        held twice."""
        f = self.fitted
        self._fit = None
        inter, bought, seen, hidden, as_of = f.inter, f.bought, f.seen, f.hidden, f.as_of
        del f
        model = fit_model(inter) if fit_model else fit_als(inter.matrix, self.als)
        self._fit = AlsFit(inter, model, bought, seen, hidden, as_of)
        return self

    def with_model(self, model: AlternatingLeastSquares) -> AlsRecommender:
        """The same fit (matrix, filters) with another model of the same ids, e.g. an earlier fit's factors."""
        other = AlsRecommender(self.als, self.weights, self.half_life_days, filter_purchased=self.filter_purchased)
        other._fit = replace(self.fitted, model=model)
        return other

    @property
    def fitted(self) -> AlsFit:
        """The fit (raises before :meth:`fit`)."""
        if self._fit is None:
            raise RuntimeError("AlsRecommender is not fitted")
        return self._fit

    def ranked(self, users: Sequence[str], n: int, exclude: sp.csr_matrix | None) -> dict[str, Ranked]:
        """ALS top-n (item_id, score) per known user, leaving out ``exclude`` rows and unavailable items."""
        f = self.fitted
        return personal_picks_of(f.model, f.inter, users, n, exclude, f.hidden)

    def recommend(self, user_ids: Iterable[str], k: int) -> dict[str, list[str]]:
        users = list(dict.fromkeys(user_ids))
        return _ids(self.ranked(users, k, self.fitted.bought if self.filter_purchased else None))

    def recommend_excluding(
        self, user_ids: Sequence[str], k: int, exclude: Mapping[str, Collection[str]]
    ) -> dict[str, list[str]]:
        users = list(dict.fromkeys(user_ids))
        skip = self.exclusion_matrix(exclude)
        if self.filter_purchased:
            skip = ((skip + self.fitted.bought) > 0).astype(np.float32).tocsr()
        return _ids(self.ranked(users, k, skip))

    def exclusion_matrix(self, exclude: Mapping[str, Collection[str]]) -> sp.csr_matrix:
        """``exclude`` as a binary user x item matrix of the fit's maps (unknown users and items left out)."""
        inter = self.fitted.inter
        rows: list[int] = []
        cols: list[int] = []
        for user, items in exclude.items():
            r = inter.user_index.get(user)
            if r is None:
                continue
            for item in items:
                c = inter.item_index.get(item)
                if c is not None:
                    rows.append(r)
                    cols.append(c)
        data = np.ones(len(rows), dtype=np.float32)
        return sp.csr_matrix((data, (rows, cols)), shape=inter.matrix.shape)


def _ids(ranked: Mapping[str, Ranked]) -> dict[str, list[str]]:
    return {u: [i for i, _ in r] for u, r in ranked.items()}
