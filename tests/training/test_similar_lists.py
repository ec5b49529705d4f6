"""The job's similar-item lists, encoded straight from the top-k arrays, hold exactly the ranked pairs."""

from __future__ import annotations

import pytest

from cache import codec
from cache.keys import Keys
from recommender.config import AlsParams, ListParams
from recommender.data.demo import generate_shop
from recommender.models import repeat
from recommender.models.als import fit_als
from recommender.models.weighting import build_interactions, latest_timestamp
from recommender.serving import lists
from training.job import Catalogue, similar_lists


@pytest.mark.parametrize("exact_max_items", [100_000, 0], ids=["every pair", "index"])
def test_similar_lists_decode_to_the_ranked_pairs(exact_max_items):
    shop = generate_shop(n_users=600, n_items=500, n_categories=6, days=60, seed=4)
    as_of = latest_timestamp(shop.events)
    inter = build_interactions(shop.events, {"view": 1, "cart": 4, "purchase": 10}, 60.0, as_of)
    model = fit_als(inter.matrix, AlsParams(factors=16, iterations=5))
    hidden = lists.hidden_item_indices(shop.items, inter)
    assert len(hidden)  # unavailable items: never anyone's neighbour, still listed themselves
    cat = Catalogue.build(inter, shop.items, repeat.repeat_candidates(shop.events, as_of))
    params = ListParams(similar_size=12, similar_exact_max_items=exact_max_items)
    expected = dict(lists.similar_items(model, inter, 12, hidden, exact_max_items))
    got = dict(similar_lists(model, inter, params, hidden, cat))
    assert len(got) == len(expected) == len(inter.item_ids)
    for item, ranked in expected.items():
        raw = got[Keys.similar(item)]
        assert raw == cat.pairs(ranked)
        decoded = codec.decode(raw, cat.ids)
        assert [i for i, _ in decoded] == [i for i, _ in ranked] and item not in {i for i, _ in decoded}
