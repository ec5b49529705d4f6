"""TIFU-KNN: customer vectors by the reference's arithmetic, neighbours, blending, the baseline and its tuning."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from factories import ev, events

from recommender.config import ModelSettings
from recommender.data.demo import generate_shop
from recommender.evaluation import metrics
from recommender.evaluation.baselines import PersonalTopFrequency, TifuKNN
from recommender.evaluation.protocol import build_context, evaluate_context
from recommender.evaluation.split import targets, time_split
from recommender.evaluation.tifu_tuning import tune_tifu
from recommender.models import tifu_knn
from recommender.models.tifu_knn import (
    PUBLISHED,
    NeighbourIndex,
    TifuKnn,
    TifuParams,
    TifuVectors,
    basket_weights,
    neighbour_means,
)


def _orders(user: str, baskets: list[list[str]], start_days_ago: float = 50) -> list[dict]:
    """One order per basket, a day apart, oldest first."""
    return [
        ev(user, item, "purchase", start_days_ago - b, order_id=f"{user}-{b}")
        for b, items in enumerate(baskets)
        for item in items
    ]


def test_basket_weights_follow_the_reference_grouping() -> None:
    p = TifuParams(group_size=3, within_decay=0.5, group_decay=0.25, k=1, alpha=1.0)
    # 7 baskets in 3 groups: sizes 2, 2, 3 (the last groups take the remainder)
    w = basket_weights(np.arange(7), np.full(7, 7), p)
    within = 0.5 ** (6 - np.arange(7))
    group = np.array([0, 0, 1, 1, 2, 2, 2])
    size = np.array([2, 2, 2, 2, 3, 3, 3])
    assert w == pytest.approx(within * 0.25 ** (2 - group) / size / 3)
    # fewer baskets than the group size: one basket per group, the group decay still counted from group_size
    w2 = basket_weights(np.arange(2), np.full(2, 2), p)
    assert w2 == pytest.approx([0.5 * 0.25**2 / 2, 1 * 0.25 / 2])


def test_customer_vector_sums_each_item_over_its_baskets() -> None:
    p = TifuParams(group_size=2, within_decay=0.5, group_decay=0.5, k=1, alpha=1.0)
    table = events(_orders("u", [["a", "b"], ["a"], ["a", "c"], ["c"]]))
    vec = TifuVectors.build(table, p)
    assert vec.user_ids.tolist() == ["u"] and vec.item_ids.tolist() == ["a", "b", "c"]
    # 4 baskets in 2 groups of 2; basket weights 0.5**3, 0.5**2, 0.5, 1; group weights 0.5, 1; divided by 2 * 2
    w = np.array([0.125 * 0.5, 0.25 * 0.5, 0.5, 1.0]) / 4
    assert vec.matrix.toarray()[0] == pytest.approx([w[0] + w[1] + w[2], w[0], w[2] + w[3]])


def test_a_customer_is_never_their_own_neighbour() -> None:
    import scipy.sparse as sp

    matrix = sp.csr_matrix(np.array([[1, 0, 0], [1, 0, 0], [0.9, 0.1, 0], [0, 0, 1]], dtype=np.float32))
    index = NeighbourIndex(matrix)
    found = index.query(np.arange(4), 2)
    assert found.shape == (4, 2)
    assert all(r not in row for r, row in enumerate(found.tolist()))
    assert found[0, 0] == 1 and found[1, 0] == 0 and found[3].tolist()[0] in (0, 1, 2)
    assert index.query(np.arange(4), 10).shape == (4, 3)  # at most every other row


def test_scores_blend_own_vector_with_the_neighbours_mean() -> None:
    rows = _orders("a", [["x"], ["x"]]) + _orders("b", [["x", "y"], ["x"]]) + _orders("c", [["z"], ["z"]])
    alone = TifuKnn(TifuParams(k=1, alpha=1.0)).fit(events(rows))
    assert [i for i, _ in alone.recommend(["a"], 5)["a"]] == ["x"]  # own items only
    blended = TifuKnn(TifuParams(k=1, alpha=0.5)).fit(events(rows))
    ranked = dict(blended.recommend(["a"], 5)["a"])
    assert set(ranked) == {"x", "y"}  # the nearest customer is b (shares x), not c
    own, neighbour = (TifuVectors.build(events(rows), TifuParams(k=1, alpha=0.5)).matrix.toarray()[i] for i in (0, 1))
    assert ranked["x"] == pytest.approx(0.5 * own[0] + 0.5 * neighbour[0], rel=1e-5)


@pytest.fixture(scope="module")
def shop():
    return generate_shop(n_users=300, n_items=100, days=120, seed=5)


def test_baseline_lists_and_fill(shop) -> None:
    model = TifuKNN(PUBLISHED["tafeng"]).fit(shop.events)
    buyers = sorted(targets(shop.events, "purchase"))[:20]
    lists = model.recommend([*buyers, "nobody"], 10)
    assert all(len(items) == 10 and len(set(items)) == 10 for items in lists.values())
    assert lists["nobody"] == model._fallback[:10]  # unknown customers get the popularity fill


def test_tifu_knn_beats_personal_frequency_on_repeat_baskets(shop) -> None:
    """On the generated shop (cycle buyers plus taste clusters) the neighbours add what frequency alone misses."""
    split = time_split(shop.events, test_days=21)
    truth = targets(split.test, "purchase")
    users = sorted(u for u in truth if u in split.warm_users)
    tifu = TifuKNN(PUBLISHED["tafeng"]).fit(split.train).recommend(users, 10)
    freq = PersonalTopFrequency().fit(split.train).recommend(users, 10)
    score = {
        name: metrics.evaluate(lists, truth, ks=(10,), users=users)["recall@10"]
        for name, lists in (("tifu", tifu), ("freq", freq))
    }
    assert score["tifu"] > score["freq"] > 0


def test_tuning_uses_only_the_training_events_and_tries_the_published_settings(shop) -> None:
    split = time_split(shop.events, test_days=21)
    best, summary = tune_tifu(split.train, validation_days=21, trials=4)
    assert summary["validation_cutoff"] < split.cutoff.isoformat()
    tried = [TifuParams(**t["params"]) for t in summary["trials"]]
    assert len(tried) == 4 and set(PUBLISHED.values()) <= set(tried)
    assert best == max(zip((t["ndcg@10"] for t in summary["trials"]), tried), key=lambda x: x[0])[1]


def test_evaluate_reports_tifu_knn_on_the_purchase_target(shop) -> None:
    ctx = build_context(shop.events, shop.items, test_days=21)
    result = evaluate_context(ctx, ModelSettings(), ("tifu_knn", "tifu_knn_dunnhumby"))
    assert set(result.figures) == {"purchase"}
    assert set(result.figures["purchase"]["warm"]) == {"tifu_knn", "tifu_knn_dunnhumby"}
    assert result.figures["purchase"]["warm"]["tifu_knn"]["ndcg@10"] > 0


def test_a_neighbour_pool_limits_the_candidates() -> None:
    import scipy.sparse as sp

    matrix = sp.csr_matrix(np.array([[1, 0], [1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32))
    pooled = NeighbourIndex(matrix, pool=np.array([4, 2, 3]))
    found = pooled.query(np.array([0, 2]), 2)
    assert found[0].tolist() == [2, 4]  # row 1, the nearest, is not in the pool
    assert found[1].tolist() == [4, 3]  # never itself
    shop = generate_shop(n_users=120, n_items=60, days=60, seed=2)
    full, capped = (
        TifuKnn(PUBLISHED["tafeng"]).fit(shop.events),
        TifuKnn(PUBLISHED["tafeng"], max_pool=30).fit(shop.events),
    )
    users = full.vectors.user_ids[:5].tolist()
    assert capped.recommend(users, 5) != full.recommend(users, 5) and all(capped.recommend(users, 5).values())


def test_scores_in_another_item_index_are_the_own_scores_moved_by_item_id() -> None:
    rows = _orders("a", [["x", "y"], ["y"]]) + _orders("b", [["x", "z"], ["z"]]) + _orders("c", [["w"], ["y", "w"]])
    tifu = TifuKnn(TifuParams(k=1, alpha=0.6)).fit(events(rows))
    other = np.array(["q", "z", "y", "x"], dtype=object)  # "w" has no column there, "q" was never bought
    moved = tifu.in_columns(other)
    users = ["c", "a", "nobody", "b"]
    assert list(moved.item_ids) == list(other) and list(tifu.item_ids) == ["w", "x", "y", "z"]
    for known, scores in moved.score_batches(users):
        assert known == ["c", "a", "b"]
        for k, user in enumerate(known):
            mine = scores[k].toarray().ravel()
            theirs = _own_row(tifu, user)
            assert mine.tolist() == [0.0, theirs["z"], theirs["y"], theirs["x"]]
    assert moved.recommend(["a"], 2)["a"] == [(i, s) for i, s in tifu.recommend(["a"], 4)["a"] if i != "w"][:2]


def _own_row(tifu: TifuKnn, user: str) -> dict[str, float]:
    """One customer's scores in the fit's own columns, by item id."""
    (_, scores), *_ = tifu.score_batches([user])
    return dict(zip(tifu.item_ids.tolist(), scores.toarray().ravel().tolist()))


@pytest.mark.parametrize("factor", [0.0, np.inf], ids=["sparse product", "dense product"])
def test_dense_scores_are_the_sparse_scores(shop, monkeypatch, factor) -> None:
    monkeypatch.setattr(tifu_knn, "DENSE_PRODUCT_FACTOR", factor)
    train = time_split(shop.events, test_days=14).train
    tifu = TifuKnn(PUBLISHED["dunnhumby"]).fit(train)
    users = ["nobody", *tifu.vectors.user_ids[::3].tolist()]
    (known, sparse), *_ = tifu.score_batches(users, batch_size=len(users))
    out = np.full((len(known), len(tifu.item_ids)), 7.0, dtype=np.float32)  # a used buffer: overwritten entirely
    dense_known, dense = tifu.dense_scores(users, out=out)
    assert dense_known == known and dense is out and "nobody" not in known
    expected = sparse.toarray()
    if factor == 0.0:  # the same sparse product, scaled and summed alike: bit for bit
        np.testing.assert_array_equal(dense.view(np.uint32), expected.view(np.uint32))
    else:  # the neighbours summed in another order: float32 rounding apart
        np.testing.assert_allclose(dense, expected, rtol=1e-5, atol=1e-7)
    assert sparse.nnz == np.count_nonzero(dense)  # nothing stored where the dense scores are zero


def test_neighbour_means_take_the_cheaper_product_with_the_same_means() -> None:
    rng = np.random.default_rng(3)
    matrix = sp.random(40, 30, density=0.2, format="csr", dtype=np.float32, random_state=rng)
    neighbours = np.array([rng.choice(40, 5, replace=False) for _ in range(12)])
    expected = np.stack([matrix[row].toarray().mean(axis=0) for row in neighbours])
    for factor in (0.0, 1.0, np.inf):
        np.testing.assert_allclose(neighbour_means(matrix, neighbours, factor=factor), expected, rtol=1e-5, atol=1e-7)


def test_dense_top_n_is_the_best_positive_entries_with_ties_by_lowest_column() -> None:
    rng = np.random.default_rng(3)
    scores = rng.choice(np.array([0.0, 0.25, 0.5, 0.75, 1.0], dtype=np.float32), size=(40, 30))  # many ties
    scores[0] = 0  # a row with nothing positive
    for n in (0, 1, 5, 10, 30, 50):
        cols, vals = tifu_knn.top_n_dense(scores, n)
        for r in range(scores.shape[0]):
            want = sorted((c for c in range(scores.shape[1]) if scores[r, c] > 0), key=lambda c: (-scores[r, c], c))
            assert cols[r].tolist() == want[:n], (n, r)
            assert vals[r].tolist() == scores[r, want[:n]].tolist()
    assert tifu_knn.top_n_dense(scores[:0], 5) == ([], [])
