"""One customer's personal and next-purchase lists from the model's pieces.

The job precomputes them for customers active lately; for everyone else the API computes them on request from the
published version (the customer's ALS factors, bought items and items due again, plus the item factors). Both use
the functions here, so both give the same lists:

* :class:`recommender.models.exact_topk.ExactTopK`: the exact ALS top-n the job's batches use
  (:func:`recommender.models.als.recommend_batches`), leaving out each customer's bought items when the job excludes
  them and unavailable items for everyone;
* :func:`recommender.serving.policy.purchaser_lists` (the serving policy): items due again blended with those
  picks, as the personal list and the next-purchase list;
* :class:`DueList`: the due items kept for one customer, standing in for the whole repeat model.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommender.config import ListParams
from recommender.models import repeat
from recommender.models.exact_topk import ExactTopK
from recommender.serving.lists import Ranked, ranked_rows
from recommender.serving.policy import purchaser_lists


@dataclass(frozen=True)
class DueList:
    """One customer's items due again, best first, as the repeat model gave them (see :func:`kept_due_items`)."""

    picks: list[repeat.NextPick]

    def due_items(self, user_id: str, limit: int, min_score: float = 0.05) -> list[repeat.NextPick]:
        return [p for p in self.picks[: max(limit, 0)] if p.score >= min_score]


def kept_due_items(
    repeats: repeat.DueSource, user_id: str, list_size: int, unavailable: Collection[str]
) -> list[repeat.NextPick]:
    """The due items both lists can use: best first, up to the ``list_size``-th available one (unavailable items
    are dropped from the personal list after blending, so the ones before that point must stay)."""
    out: list[repeat.NextPick] = []
    available = 0
    for pick in repeats.due_items(user_id, list_size + len(unavailable)):
        if available >= list_size:
            break
        out.append(pick)
        available += pick.item_id not in unavailable
    return out


@dataclass(frozen=True)
class CustomerRow:
    """What a published version keeps for a customer whose lists are computed on request."""

    factor: np.ndarray  # ALS user factors, float32 as fitted
    bought: np.ndarray  # catalogue positions of the items they bought
    due: list[repeat.NextPick]  # :func:`kept_due_items`
    purchaser: bool


class OnRequest:
    """Customers' lists computed from their :class:`CustomerRow` against one version's item factors."""

    def __init__(self, catalogue: list[str], item_factors: np.ndarray, hidden: Collection[str], params: ListParams):
        self.catalogue = catalogue
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        self.item_ids = np.array(catalogue[: len(item_factors)], dtype=object)
        index = {item: j for j, item in enumerate(self.item_ids.tolist())}
        self.hidden = np.array(sorted(index[i] for i in hidden if i in index), dtype=np.int32)
        self.search = ExactTopK(self.item_factors, self.hidden)
        self.unavailable = frozenset(hidden)
        self.params = params

    def lists(self, rows: list[CustomerRow]) -> list[tuple[Ranked, list[dict[str, Any]] | None]]:
        """(personal list, next-purchase list or None without purchases) per row, in one top-k call."""
        if not rows:
            return []
        p = self.params
        exclude = None
        if p.exclude_purchased:
            n_items = len(self.item_ids)
            indptr = np.cumsum([0] + [len(r.bought) for r in rows])
            indices = np.concatenate([r.bought for r in rows]).astype(np.int32)
            exclude = sp.csr_matrix(
                (np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(rows), n_items)
            )
        factors = np.vstack([r.factor for r in rows]).astype(np.float32)
        ids, scores = self.search.search(factors, min(p.list_size, len(self.item_ids)), exclude)
        out: list[tuple[Ranked, list[dict[str, Any]] | None]] = []
        for row, ranked in zip(rows, ranked_rows(ids, scores, self.item_ids)):
            if not row.purchaser:
                out.append((ranked, None))
                continue
            bought = lambda r=row: {self.catalogue[j] for j in r.bought.tolist()}
            out.append(purchaser_lists(DueList(row.due), "", ranked, bought, p, self.unavailable))
        return out
