"""The blend's candidates and features against a straightforward reference: every source's picks and every feature
computed customer by customer from dense arrays, TIFU-KNN scored in its own item columns and moved by item id."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import scipy.sparse as sp

from recommender.config import ModelSettings
from recommender.data.demo import generate_shop
from recommender.evaluation.blend_learning import BATCH, blended, policy_lists
from recommender.evaluation.split import time_split
from recommender.models.als_recommender import AlsRecommender
from recommender.models.blend_candidates import (
    FEATURES,
    CandidateBatch,
    CandidateSources,
    _top_positive,
    _values_at,
)
from recommender.models.blend_ranker import ranked_picks, train_ranker, with_fallback
from recommender.models.repeat import repeat_candidates
from recommender.models.tifu_knn import PUBLISHED, TifuKnn, top_n_sparse, top_rows

SETTINGS = ModelSettings.from_dict({"als": {"factors": 8, "iterations": 4}})
_RANKED = ("repeat_score", "als_score", "tifu_score")


@pytest.fixture(scope="module")
def shop():
    data = generate_shop(n_users=300, n_items=150, n_categories=6, days=120, seed=11, kind="grocery")
    gone = set(data.items["item_id"].to_pylist()[:6])
    items = data.items.set_column(
        data.items.schema.get_field_index("available"),
        "available",
        pa.array([i not in gone for i in data.items["item_id"].to_pylist()]),
    )
    train = time_split(data.events, test_days=21).train
    views = train.filter(pc.equal(train["event_type"], "view")).slice(0, 3)
    only_views = views.set_column(views.schema.get_field_index("user_id"), "user_id", pa.array(["only-views"] * 3))
    train = pa.concat_tables([train, only_views])  # a customer the fit knows and TIFU-KNN does not
    s = SETTINGS
    fit = AlsRecommender(s.als, s.weights.as_dict(), s.half_life_days).fit(train, items=items).fitted
    sources = CandidateSources(train, items, fit, repeat_candidates(train, fit.as_of, 30))
    return train, fit, sources


def _dense_tifu(train: pa.Table, item_ids: np.ndarray, users: list[str]) -> np.ndarray:
    """TIFU-KNN scores of ``users`` in its own item columns, moved to ``item_ids`` one item id at a time (the dense
    scores: the sparse ones to float32 rounding, tests/models/test_tifu_knn.py; a ranker's split may fall on a value,
    so the reference adds the neighbours up in the same order as the candidates do)."""
    tifu = TifuKnn(PUBLISHED["tafeng"]).fit(train)
    column = {item: c for c, item in enumerate(item_ids.tolist())}
    out = np.zeros((len(users), len(item_ids)), dtype=np.float32)
    row = {u: k for k, u in enumerate(users)}
    known, dense = tifu.dense_scores(users)
    coo = sp.coo_matrix(dense)
    for r, c, v in zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist()):
        if tifu.item_ids[c] in column:
            out[row[known[r]], column[tifu.item_ids[c]]] = v
    return out


def _top(values: np.ndarray, n: int) -> np.ndarray:
    return top_n_sparse(sp.csr_matrix(values[None, :]), n)[0][0]


def _reference_picks(sources: CandidateSources, r: int, k: int, als: np.ndarray, tifu: np.ndarray) -> list:
    """Each source's picks for the customer of matrix row ``r`` (batch row ``k``), from dense rows."""
    p, hidden = sources.params, sources.fit.hidden
    bought = sources.fit.bought[r].toarray().ravel() > 0
    days, repeat = sources.days[r].toarray().ravel(), sources.repeat[r].toarray().ravel()
    als_row = als[k].copy()
    als_row[bought] = -np.inf
    als_row[hidden] = -np.inf
    top_als = np.argsort(-als_row, kind="stable")[: p.als]
    # co-purchase scores and category shares as one-row sparse products: ties at a cut follow the product's order
    co = sp.csr_matrix(bought.astype(np.float32)[None, :]) @ sources.similar
    co = (co - co.multiply(bought[None, :])).tocsr()
    co.eliminate_zeros()
    affinity = sources.affinity[r]
    favourite = affinity.indices[np.argsort(-affinity.data, kind="stable")][: p.favourite_categories]
    trending = sorted({c for f in favourite for c in sources.trending[f].tolist() if not bought[c]})
    shown = np.ones(len(bought), dtype=bool)
    shown[hidden] = False  # every source's n are items that can be shown
    co.data[~shown[co.indices]] = 0  # in place: ties at a cut keep the product's order
    co.eliminate_zeros()
    return [
        _top(np.where(shown, days + repeat * 1000.0, 0.0), p.own),
        top_als[np.isfinite(als_row[top_als])],
        _top(np.where(shown, tifu[k], 0.0), p.tifu),
        top_n_sparse(co, p.copurchase)[0][0],
        np.array(trending, dtype=np.int64),
    ]


def _reference_features(sources: CandidateSources, r: int, cols: np.ndarray, als: np.ndarray, tifu: np.ndarray):
    """The features of candidates ``cols`` of the customer of matrix row ``r``, element by element."""
    dense = {name: getattr(sources, name)[r].toarray().ravel() for name in ("repeat", "due", "days", "since")}
    bought = (sources.fit.bought[r].toarray().ravel() > 0).astype(np.float32)
    co = (sp.csr_matrix(bought[None, :]) @ sources.similar).toarray().ravel()
    affinity = sources.affinity[r].toarray().ravel()
    rows = []
    for c in cols.tolist():
        due, since, cat = dense["due"][c], dense["since"][c], sources.category[c]
        rows.append(
            [
                dense["repeat"][c],
                due - 1 if due > 0 else 365.0,
                dense["days"][c],
                since - 1 if since > 0 else 3650.0,
                dense["days"][c] / max(sources.customer_days[r], 1),
                als[c],
                tifu[c],
                co[c],
                sources.item[c, 0],
                np.log1p(sources.item[c, 1]),
                sources.item[c, 2],
                affinity[cat] if cat >= 0 else 0.0,
                sources.item[c, 3],
                np.log1p(sources.customer_days[r]),
            ]
        )
    X = np.array(rows, dtype=np.float32).reshape(len(cols), len(FEATURES) - len(_RANKED))
    ranks = [np.argsort(np.lexsort((cols, -X[:, FEATURES.index(f)]))) for f in _RANKED]  # best first, ties by column
    return np.column_stack([X, *ranks]).astype(np.float32)


def _reference_batch(train: pa.Table, fit, sources: CandidateSources, users: list[str]) -> CandidateBatch:
    """The batch of ``users`` built customer by customer: the union of the reference picks (first source kept, hidden
    items left out, columns ascending) and their reference features."""
    known = [u for u in users if u in fit.inter.user_index]
    rows = np.array([fit.inter.user_index[u] for u in known])
    # ALS scores in float64: the candidates are the exact top-n of the personal lists' search, the feature is the
    # pair's score summed in float64 (then stored as float32 like every feature)
    als = fit.model.user_factors[rows].astype(np.float64) @ fit.model.item_factors.T.astype(np.float64)
    tifu = _dense_tifu(train, fit.inter.item_ids, known)
    hidden = set(fit.hidden.tolist())
    pos, cols, source, X = [], [], [], []
    for k, r in enumerate(rows.tolist()):
        first: dict[int, int] = {}
        for s, picks in enumerate(_reference_picks(sources, r, k, als, tifu)):
            for c in picks.tolist():
                if c not in hidden:
                    first.setdefault(c, s)
        mine = np.array(sorted(first), dtype=np.int64)
        pos.append(np.full(len(mine), k, dtype=np.int64))
        cols.append(mine)
        source.append(np.array([first[c] for c in mine.tolist()], dtype=np.int64))
        X.append(_reference_features(sources, r, mine, als[k], tifu[k]))
    return CandidateBatch(known, *(np.concatenate(a) for a in (pos, cols)), np.concatenate(X), np.concatenate(source))


def test_candidates_and_features_equal_a_customer_by_customer_reference(shop) -> None:
    train, fit, sources = shop
    users = ["not-a-customer", "only-views", *sorted(pc.unique(train["user_id"]).to_pylist())[:90]]
    batch = sources.batch(users)
    reference = _reference_batch(train, fit, sources, users)
    assert batch.users == reference.users and "only-views" in batch.users and "not-a-customer" not in batch.users
    assert len(fit.hidden) and (reference.X[reference.user_pos == 0][:, FEATURES.index("tifu_score")] == 0).all()
    np.testing.assert_array_equal(batch.user_pos, reference.user_pos)
    np.testing.assert_array_equal(batch.cols, reference.cols)
    np.testing.assert_array_equal(batch.source, reference.source)
    np.testing.assert_array_equal(batch.X, reference.X)
    assert set(np.unique(batch.source).tolist()) == {0, 1, 2, 3, 4}  # every source took part
    p = sources.params  # each source's n are shown items: unavailable ones do not widen anybody's candidates
    assert (
        np.bincount(batch.user_pos).max() <= p.own + p.als + p.tifu + p.copurchase + p.trending * p.favourite_categories
    )


def test_ranked_lists_equal_those_of_the_reference_rows(shop) -> None:
    train, fit, sources = shop
    users = sorted(pc.unique(train["user_id"]).to_pylist())[-80:]
    batch, reference = sources.batch(users), _reference_batch(train, fit, sources, users)
    y = (reference.X[:, FEATURES.index("bought_days")] > 2).astype(np.int32)
    ranker = train_ranker(reference.X, y, reference.groups())
    mine = ranked_picks(batch, ranker.score(batch), fit.inter.item_ids, fit.as_of, 10)
    assert mine == ranked_picks(reference, ranker.score(reference), fit.inter.item_ids, fit.as_of, 10)
    assert len(mine) == len(users) and all(len(p) == 10 for p in mine.values())


def test_values_at_reads_stored_entries_and_zero_elsewhere() -> None:
    # row 0 unsorted with a duplicate (summed), row 1 empty, row 2 one entry
    m = sp.csr_matrix((np.array([3.0, 1.0, 2.0, 5.0]), np.array([4, 1, 4, 0]), np.array([0, 3, 3, 4])), shape=(3, 6))
    rows, cols = np.array([0, 0, 0, 1, 2, 2]), np.array([4, 1, 2, 4, 0, 5])
    assert _values_at(m, rows, cols).tolist() == [5.0, 1.0, 0.0, 0.0, 5.0, 0.0]
    assert _values_at(sp.csr_matrix((2, 3)), np.array([1]), np.array([2])).tolist() == [0.0]
    assert _values_at(m, np.array([], np.int64), np.array([], np.int64)).tolist() == []


def test_blended_lists_equal_those_ranked_from_the_reference_rows(shop) -> None:
    """The lists the job publishes (customers in batches of BATCH, the last one smaller, work arrays kept from batch to
    batch) are those ranked from the customer-by-customer reference rows, topped up with the same policy lists; and a
    customer's list does not depend on the batch it is built in."""
    train, fit, sources = shop
    users = ["not-a-customer", *sorted(pc.unique(train["user_id"]).to_pylist())]  # "only-views" among them
    assert len(users) > BATCH
    reference = _reference_batch(train, fit, sources, users)
    ranker = train_ranker(
        reference.X, (reference.X[:, FEATURES.index("bought_days")] > 2).astype(np.int32), reference.groups()
    )
    n = 20
    fallback = policy_lists(fit, repeat_candidates(train, fit.as_of, 30), users, n, 1.0)
    mine = blended(sources, ranker, users, fallback, n)
    ranked = ranked_picks(reference, ranker.score(reference), fit.inter.item_ids, fit.as_of, n)
    assert mine == {u: with_fallback(p, fallback.get(u, []), n) for u, p in ranked.items()}
    assert list(mine) == reference.users and len(mine) > BATCH and all(len(p) == n for p in mine.values())
    for u in users[::25]:
        assert blended(sources, ranker, [u], fallback, n) == ({u: mine[u]} if u in mine else {})


def test_top_rows_leave_a_tie_at_the_cut_to_the_per_row_choice() -> None:
    scores = np.array(
        [
            [0.5, 0.9, 0.5, 0.0, 0.5, 0.7],  # best 3: 0.9, 0.7 and one of three tied 0.5s
            [0.0, 0.2, 0.0, 0.0, 0.0, 0.0],  # fewer positive entries than 3
            [0.3, 0.1, 0.4, 0.2, 0.0, 0.5],  # no tie at the cut
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ],
        dtype=np.float32,
    )
    asked: list[list[float]] = []

    def one_row(values: np.ndarray, n: int) -> np.ndarray:
        asked.append(values.tolist())
        return np.array([4, 1, 5])  # a choice of its own among the ties

    work = np.full_like(scores, 3.0)
    pos, cols = top_rows(scores, 3, 0.0, one_row, work)
    assert asked == [scores[0].tolist()]  # only the row with a tie at the cut
    assert list(zip(pos.tolist(), cols.tolist())) == [(0, 4), (0, 1), (0, 5), (1, 1), (2, 0), (2, 2), (2, 5)]
    pos, cols = _top_positive(scores, 3, work)
    per_row = [set(top_n_sparse(sp.csr_matrix(row[None, :]), 3)[0][0].tolist()) for row in scores]
    assert [set(cols[pos == r].tolist()) for r in range(len(scores))] == per_row
    assert top_rows(scores, 0, 0.0, one_row, work)[0].tolist() == []
