"""Baselines: exact rankings on tiny logs."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from recommender.data.schema import EVENT_SCHEMA
from recommender.evaluation.baselines import (
    GlobalPopularity,
    ItemKNN,
    MostRecentItems,
    PersonalTopFrequency,
    RecentPopularity,
    popularity_ranking,
)

T0 = datetime(2024, 1, 1)
P, V, C, R = "purchase", "view", "cart", "return"


def events(rows: list[tuple]) -> pa.Table:
    """rows: (user, item, event_type, day, order_id)."""
    return pa.table(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": [r[2] for r in rows],
            "timestamp": [T0 + timedelta(days=r[3]) for r in rows],
            "quantity": [1.0] * len(rows),
            "price": [5.0] * len(rows),
            "order_id": [r[4] for r in rows],
        },
        schema=EVENT_SCHEMA,
    )


LOG = events(
    [
        ("u1", "a", P, 0, "o1"),
        ("u1", "b", P, 0, "o1"),
        ("u1", "a", P, 2, "o2"),
        ("u1", "c", P, 5, "o3"),
        ("u1", "d", V, 6, None),
        ("u2", "b", P, 1, "o4"),
        ("u2", "b", P, 3, "o5"),
        ("u2", "c", P, 3, "o5"),
        ("u2", "a", V, 4, None),
        ("u2", "e", C, 9, None),
        ("u3", "a", V, 1, None),
        ("u3", "d", V, 8, None),
        ("u3", "d", P, 9, "o6"),
        ("u3", "d", R, 9.5, "o6r"),  # newest event; returns are ignored
        ("u4", "e", P, 8, "o7"),
        ("u4", "c", P, 9, "o8"),
        ("u5", "e", P, 7, "o9"),
        ("u5", "d", P, 7, "o9"),
    ]
)
USERS = ["u1", "u2", "u3", "u4", "u5", "u9"]  # u9 is unknown

# distinct interacting users (view/cart/purchase): a {u1,u2,u3}=3, b {u1,u2}=2, c {u1,u2,u4}=3,
#   d {u1,u3,u5}=3, e {u2,u4,u5}=3
# distinct purchasers: a {u1}=1, b {u1,u2}=2, c {u1,u2,u4}=3, d {u3,u5}=2, e {u4,u5}=2
# popularity_ranking (purchasers, then users, then id): c(3,3), d(2,3), e(2,3), b(2,2), a(1,3)
POPULAR = ["c", "d", "e", "b", "a"]


def test_popularity_ranking():
    assert popularity_ranking(LOG) == POPULAR


def test_global_popularity():
    # users: a=c=d=e=3 -> by id a, c, d, e; then b=2
    recs = GlobalPopularity().fit(LOG).recommend(USERS, 5)
    assert all(r == ["a", "c", "d", "e", "b"] for r in recs.values())
    assert GlobalPopularity().fit(LOG).recommend(["u1"], 2) == {"u1": ["a", "c"]}
    # purchasers: c=3; b=d=e=2; a=1
    assert GlobalPopularity(purchase_only=True).fit(LOG).recommend(["u9"], 5) == {"u9": ["c", "b", "d", "e", "a"]}


def test_global_popularity_weighted():
    # each user counted once at their strongest event; view 1, cart 2, purchase 3:
    # a: u1 3 + u2 1 + u3 1 = 5; b: 3 + 3 = 6; c: 3 * 3 = 9; d: u1 1 + u3 3 + u5 3 = 7;
    # e: u2 2 + u4 3 + u5 3 = 8
    model = GlobalPopularity(weights={"view": 1, "cart": 2, "purchase": 3}).fit(LOG)
    assert model.recommend(["u1"], 5) == {"u1": ["c", "e", "d", "b", "a"]}
    with pytest.raises(ValueError):
        GlobalPopularity(weights={"return": 1.0})


def test_global_popularity_filter_purchased():
    model = GlobalPopularity(filter_purchased=True).fit(LOG)
    recs = model.recommend(["u1", "u5", "u9"], 3)
    assert recs == {
        "u1": ["d", "e"],  # a, b, c purchased; only 2 items left
        "u5": ["a", "c", "b"],  # d, e purchased
        "u9": ["a", "c", "d"],
    }


def test_recent_popularity():
    # newest event day 9.5 -> window [6.5, 9.5]: purchases d (u3 day 9, u5 day 7), e (u4 day 8,
    # u5 day 7), c (u4 day 9) -> recent d=2, e=2, c=1; then the rest by all-time purchasers: b=2, a=1
    model = RecentPopularity(window_days=3).fit(LOG)
    assert model.recommend(["u1", "u9"], 5) == {"u1": ["d", "e", "c", "b", "a"], "u9": ["d", "e", "c", "b", "a"]}
    # window [7.5, 9.5]: d=1 (u3), e=1 (u4), c=1 (u4); ties by all-time purchasers: c=3, d=2, e=2
    assert RecentPopularity(window_days=2).fit(LOG).recommend(["u9"], 3) == {"u9": ["c", "d", "e"]}
    assert RecentPopularity(3, filter_purchased=True).fit(LOG).recommend(["u4"], 5) == {"u4": ["d", "b", "a"]}


def test_personal_top_frequency():
    recs = PersonalTopFrequency().fit(LOG).recommend(USERS, 5)
    assert recs == {
        "u1": ["a", "c", "b", "d", "e"],  # a in 2 orders; c (day 5) and b (day 0) in 1: most recent first
        "u2": ["b", "c", "d", "e", "a"],  # b in 2 orders, c in 1; then popularity fill
        "u3": ["d", "c", "e", "b", "a"],  # the return of d changes nothing
        "u4": ["c", "e", "d", "b", "a"],  # 1 order each; c (day 9) more recent than e (day 8)
        "u5": ["d", "e", "c", "b", "a"],  # same order, same time: by item_id
        "u9": POPULAR,
    }
    assert PersonalTopFrequency().fit(LOG).recommend(["u1"], 2) == {"u1": ["a", "c"]}


def test_personal_top_frequency_options():
    no_fill = PersonalTopFrequency(fill_popular=False).fit(LOG).recommend(["u1", "u9"], 5)
    assert no_fill == {"u1": ["a", "c", "b"], "u9": []}
    filtered = PersonalTopFrequency(filter_purchased=True).fit(LOG).recommend(["u1", "u2", "u5"], 5)
    assert filtered == {"u1": ["d", "e"], "u2": ["d", "e", "a"], "u5": ["c", "b", "a"]}


def test_most_recent_items():
    recs = MostRecentItems().fit(LOG).recommend(USERS, 5)
    assert recs == {
        "u1": ["c", "a", "b"],  # c day 5, a last bought day 2, b day 0; the view of d is not a purchase
        "u2": ["b", "c"],  # both last bought on day 3: by item_id
        "u3": ["d"],
        "u4": ["c", "e"],
        "u5": ["d", "e"],
        "u9": [],
    }
    assert MostRecentItems(fill_popular=True).fit(LOG).recommend(["u3"], 4) == {"u3": ["d", "c", "e", "b"]}
    assert MostRecentItems(filter_purchased=True).fit(LOG).recommend(["u1"], 5) == {"u1": []}


def test_unfitted_and_bad_k():
    with pytest.raises(RuntimeError):
        GlobalPopularity().recommend(["u1"], 3)
    with pytest.raises(ValueError):
        GlobalPopularity().fit(LOG).recommend(["u1"], -1)
    assert GlobalPopularity().fit(LOG).recommend(["u1"], 0) == {"u1": []}


# --- ItemKNN -----------------------------------------------------------------------------------------

# purchases: u1 {a, b}, u2 {a, b, c}, u3 {c, d}, u4 {a}
KNN_LOG = events(
    [("u1", "a", P, 0, "o1"), ("u1", "b", P, 0, "o1")]
    + [("u2", "a", P, 1, "o2"), ("u2", "b", P, 1, "o2"), ("u2", "c", P, 1, "o2")]
    + [("u3", "c", P, 2, "o3"), ("u3", "d", P, 2, "o3"), ("u4", "a", P, 3, "o4")]
)
# item columns: a {u1,u2,u4}, b {u1,u2}, c {u2,u3}, d {u3}; cosine similarity (implicit keeps the
# diagonal, sim(i, i) = 1):
#   a-b 2/sqrt(3*2) = 0.8165, a-c 1/sqrt(3*2) = 0.4082, b-c 1/sqrt(2*2) = 0.5, c-d 1/sqrt(2*1) = 0.7071
# scores = user row @ similarity:
#   u2 (a,b,c): a 1+0.8165+0.4082 = 2.2247, b 0.8165+1+0.5 = 2.3165, c 0.4082+0.5+1 = 1.9082, d 0.7071
#   u4 (a): a 1, b 0.8165, c 0.4082, d 0
#   u1 (a,b): c 0.4082+0.5 = 0.9082, d 0;  u3 (c,d): b 0.5, a 0.4082
# popularity fill (purchasers): a 3, b 2, c 2, d 1


def test_item_knn_cosine_rankings():
    model = ItemKNN("cosine", K=100).fit(KNN_LOG)
    sim = model.model_.similarity.toarray()
    assert sim[0, 1] == pytest.approx(2 / np.sqrt(6))
    assert sim[2, 3] == pytest.approx(1 / np.sqrt(2))
    recs = model.recommend(["u2", "u4", "u9"], 4)
    assert recs == {"u2": ["b", "a", "c", "d"], "u4": ["a", "b", "c", "d"], "u9": ["a", "b", "c", "d"]}
    # without filling, d (score 0) is not recommended to u4
    assert ItemKNN(fill_popular=False).fit(KNN_LOG).recommend(["u4", "u9"], 4) == {"u4": ["a", "b", "c"], "u9": []}


def test_item_knn_filters():
    liked = ItemKNN(filter_already_liked=True, fill_popular=False).fit(KNN_LOG)
    assert liked.recommend(["u1", "u2", "u3", "u4"], 4) == {
        "u1": ["c"],
        "u2": ["d"],
        "u3": ["b", "a"],
        "u4": ["b", "c"],
    }
    # liked items are not brought back by the popularity fill either
    assert ItemKNN(filter_already_liked=True).fit(KNN_LOG).recommend(["u4"], 4) == {"u4": ["b", "c", "d"]}
    purchased = ItemKNN(filter_purchased=True).fit(KNN_LOG)
    assert purchased.recommend(["u1", "u4"], 2) == {"u1": ["c", "d"], "u4": ["b", "c"]}


def test_item_knn_ties_by_item_id():
    # y and x have identical user sets, so every score for them is computed identically
    log = events(
        [("u1", "a", P, 0, None), ("u1", "y", P, 0, None), ("u1", "x", P, 0, None)]
        + [("u2", "y", P, 0, None), ("u2", "x", P, 0, None), ("u3", "a", P, 0, None)]
    )
    for kind in ("cosine", "bm25"):
        recs = ItemKNN(kind, filter_already_liked=True, fill_popular=False).fit(log).recommend(["u3"], 2)
        assert recs == {"u3": ["x", "y"]}


@pytest.mark.parametrize("kind", ["cosine", "bm25"])
def test_item_knn_scores_match_implicit(kind):
    model = ItemKNN(kind, K=3).fit(LOG)
    rows = np.arange(len(model.user_ids_))
    n_items = len(model.item_ids_)
    ids, scores = model.model_.recommend(rows, model.user_items_[rows], N=n_items, filter_already_liked_items=False)
    ours = model.scores(rows).toarray()
    for r in rows:
        valid = ids[r] >= 0
        expected = np.zeros(n_items)
        expected[ids[r][valid]] = scores[r][valid]
        np.testing.assert_allclose(ours[r], expected, rtol=1e-6, atol=1e-9)


def test_item_knn_weighted_matrix():
    model = ItemKNN("bm25", weights={"view": 1.0, "purchase": 3.0}).fit(LOG)
    row = list(model.user_ids_).index("u1")
    col = {item: j for j, item in enumerate(model.item_ids_)}
    m = model.user_items_.toarray()
    # u1: a bought twice = 3 + 3, b and c once = 3, d viewed = 1, e nothing
    assert m[row, col["a"]] == 6 and m[row, col["b"]] == 3 and m[row, col["d"]] == 1 and m[row, col["e"]] == 0
    binary = ItemKNN(purchase_only=True).fit(LOG)
    assert binary.user_items_.max() == 1.0
    assert list(binary.item_ids_) == ["a", "b", "c", "d", "e"]
    assert "u3" in binary.user_ids_  # u3 bought d
    assert len(binary.user_ids_) == 5
