"""Similar items from the approximate index agree with the exact lists."""

from __future__ import annotations

import numpy as np

from recommender.config import AlsParams
from recommender.data.demo import generate_shop
from recommender.models.als import fit_als, similar_batches
from recommender.models.similar_index import similar_batches_ivf
from recommender.models.weighting import build_interactions, latest_timestamp


def test_index_finds_the_exact_neighbours_and_never_an_unavailable_item():
    shop = generate_shop(n_users=3000, n_items=3000, n_categories=10, days=120, seed=2)
    inter = build_interactions(shop.events, {"view": 1, "cart": 4, "purchase": 10}, 60.0, latest_timestamp(shop.events))
    model = fit_als(inter.matrix, AlsParams(factors=32, iterations=10))
    hidden = np.arange(0, len(inter.item_ids), 25, dtype=np.int32)
    exact = {r: i for rows, ids, _ in similar_batches(model, 10, hidden) for r, i in zip(rows, ids)}
    hits = total = 0
    for rows, ids, scores in similar_batches_ivf(model.item_factors, 10, hidden):
        assert ids.shape == (len(rows), 10)
        assert not np.isin(ids, hidden).any() and not (ids == rows[:, None]).any()
        ok = ids >= 0
        assert (np.diff(np.where(ok, scores, -np.inf), axis=1) <= 1e-6).all()  # best first
        for r, found in zip(rows, ids):
            hits += len(set(found.tolist()) & set(exact[r].tolist()))
            total += 10
    assert hits / total >= 0.95
