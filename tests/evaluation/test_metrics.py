"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recommender.evaluation.metrics import (
    coverage_at_k,
    evaluate,
    hit_rate_at_k,
    map_at_k,
    ndcg_at_k,
    per_user,
    precision_at_k,
    recall_at_k,
    seen_share_at_k,
    split_repeat_new,
)

L2, L3, L4, L5 = (math.log2(n) for n in (2, 3, 4, 5))

# u1: ranks 1..4 = a, b, c, d; relevant {b, d, x} -> hits at ranks 2 and 4
REC1 = {"u1": ["a", "b", "c", "d"]}
TRUTH1 = {"u1": {"b", "d", "x"}}


def test_single_user_at_4():
    # precision@4 = 2 hits / 4 = 0.5
    assert precision_at_k(REC1, TRUTH1, 4) == pytest.approx(0.5)
    # recall@4 = 2 hits / |truth| 3 = 2/3
    assert recall_at_k(REC1, TRUTH1, 4) == pytest.approx(2 / 3)
    # DCG = 1/log2(3) + 1/log2(5) = 0.63093 + 0.43068 = 1.06161
    # IDCG over min(4, 3) = 3 hits = 1/log2(2) + 1/log2(3) + 1/log2(4) = 1 + 0.63093 + 0.5 = 2.13093
    # NDCG = 1.06161 / 2.13093 = 0.49819
    assert ndcg_at_k(REC1, TRUTH1, 4) == pytest.approx((1 / L3 + 1 / L5) / (1 / L2 + 1 / L3 + 1 / L4))
    assert ndcg_at_k(REC1, TRUTH1, 4) == pytest.approx(0.49819, abs=1e-5)
    # AP: precision at the hits: rank 2 -> 1/2, rank 4 -> 2/4; (0.5 + 0.5) / min(4, 3) = 1/3
    assert map_at_k(REC1, TRUTH1, 4) == pytest.approx(1 / 3)
    assert hit_rate_at_k(REC1, TRUTH1, 4) == 1.0


def test_per_user_values_are_each_customers_in_order_and_average_to_the_mean():
    recs = {"u1": ["a", "b", "c", "d"], "u2": ["x"]}
    truth = {"u1": {"b", "d", "x"}, "u2": {"x"}, "u3": {"y"}}  # u3 got no list: 0
    values = per_user("ndcg", recs, truth, 4, ["u2", "u1", "u3"])
    assert values.tolist() == pytest.approx([1.0, (1 / L3 + 1 / L5) / (1 / L2 + 1 / L3 + 1 / L4), 0.0])
    assert values.mean() == pytest.approx(ndcg_at_k(recs, truth, 4))
    assert per_user("recall", recs, truth, 4, ["u1"]).tolist() == pytest.approx([2 / 3])
    with pytest.raises(ValueError, match="non-empty truth"):
        per_user("ndcg", recs, {"u1": set()}, 4, ["u1"])


def test_single_user_at_2():
    # top 2 = a, b: one hit at rank 2
    assert precision_at_k(REC1, TRUTH1, 2) == pytest.approx(1 / 2)
    assert recall_at_k(REC1, TRUTH1, 2) == pytest.approx(1 / 3)
    # DCG = 1/log2(3) = 0.63093; IDCG over min(2, 3) = 2 hits = 1 + 0.63093; NDCG = 0.38685
    assert ndcg_at_k(REC1, TRUTH1, 2) == pytest.approx((1 / L3) / (1 + 1 / L3))
    # AP = (1/2) / min(2, 3) = 0.25
    assert map_at_k(REC1, TRUTH1, 2) == pytest.approx(0.25)
    # top 1 = a: no hit
    assert hit_rate_at_k(REC1, TRUTH1, 1) == 0.0


def test_truth_larger_than_k_and_perfect_list():
    rec = {"u": ["a", "b", "z"]}
    truth = {"u": {"a", "b", "c", "d", "e"}}
    # both top-2 items relevant: IDCG over min(2, 5) = 2 -> NDCG 1, AP = (1/1 + 2/2) / 2 = 1
    assert ndcg_at_k(rec, truth, 2) == pytest.approx(1.0)
    assert map_at_k(rec, truth, 2) == pytest.approx(1.0)
    # recall uses |truth| = 5, not min(k, |truth|): 2/5
    assert recall_at_k(rec, truth, 2) == pytest.approx(0.4)
    # k=3: hits 1,1,0 -> precision 2/3; AP = (1 + 1) / min(3, 5) = 2/3
    assert precision_at_k(rec, truth, 3) == pytest.approx(2 / 3)
    assert map_at_k(rec, truth, 3) == pytest.approx(2 / 3)


def test_first_rank_hit_only():
    rec = {"u": ["x", "a", "b"]}
    truth = {"u": {"x"}}
    # DCG = IDCG = 1 -> NDCG 1; AP = 1/1 / min(3, 1) = 1; precision@3 = 1/3
    assert ndcg_at_k(rec, truth, 3) == pytest.approx(1.0)
    assert map_at_k(rec, truth, 3) == pytest.approx(1.0)
    assert precision_at_k(rec, truth, 3) == pytest.approx(1 / 3)


def test_duplicates_are_dropped_and_short_lists_penalised():
    # [b, b, d] -> [b, d]: both relevant
    assert precision_at_k({"u": ["b", "b", "d"]}, {"u": {"b", "d"}}, 2) == pytest.approx(1.0)
    # one item recommended, k = 4: precision 1/4 (divided by k, not by the list length)
    assert precision_at_k({"u": ["b"]}, {"u": {"b"}}, 4) == pytest.approx(0.25)


# Three users with truth (u1 as above, u2 perfect, u3 without recommendations) and one without.
RECS = {"u1": ["a", "b", "c", "d"], "u2": ["x", "y"], "u4": ["a", "q"]}
TRUTH = {"u1": {"b", "d", "x"}, "u2": {"x"}, "u3": {"q"}, "u4": set()}
HISTORY = {"u1": {"a", "b", "z"}, "u2": set()}


def test_evaluate_averages_over_users_with_truth():
    out = evaluate(RECS, TRUTH, ks=(2, 4), history=HISTORY, catalogue_size=10)
    assert out["users"] == 3  # u1, u2, u3; u4 has empty truth
    # precision@4: u1 0.5, u2 1/4, u3 0 -> 0.75 / 3
    assert out["precision@4"] == pytest.approx(0.75 / 3)
    # recall@4: 2/3, 1, 0
    assert out["recall@4"] == pytest.approx((2 / 3 + 1) / 3)
    # ndcg@4: 0.49819, 1, 0
    assert out["ndcg@4"] == pytest.approx(((1 / L3 + 1 / L5) / (1 + 1 / L3 + 1 / L4) + 1) / 3)
    # map@4: 1/3, 1, 0
    assert out["map@4"] == pytest.approx((1 / 3 + 1) / 3)
    # hit_rate@4: 1, 1, 0
    assert out["hit_rate@4"] == pytest.approx(2 / 3)
    # @2: precision 1/2, 1/2, 0; map 0.25, 1, 0
    assert out["precision@2"] == pytest.approx(1 / 3)
    assert out["map@2"] == pytest.approx(1.25 / 3)
    # coverage over the evaluated users' lists: @4 {a,b,c,d,x,y} = 6/10, @2 {a,b,x,y} = 4/10
    assert out["coverage@4"] == pytest.approx(0.6)
    assert out["coverage@2"] == pytest.approx(0.4)
    # seen_share@4: u1 {a,b} of 4 = 0.5, u2 0/2 = 0, u3 no list = 0 -> 0.5/3
    assert out["seen_share@4"] == pytest.approx(0.5 / 3)
    # seen_share@2: u1 [a,b] both seen = 1 -> 1/3
    assert out["seen_share@2"] == pytest.approx(1 / 3)
    # evaluate agrees with the single-metric functions
    assert out["ndcg@4"] == pytest.approx(ndcg_at_k(RECS, TRUTH, 4))


def test_evaluate_optional_keys_and_user_subset():
    out = evaluate(RECS, TRUTH, ks=(10,))
    assert set(out) == {"users", "precision@10", "recall@10", "ndcg@10", "map@10", "hit_rate@10"}
    sub = evaluate(RECS, TRUTH, ks=(4,), users=["u2", "u4", "nobody"])
    assert sub["users"] == 1  # only u2 has truth
    assert sub["precision@4"] == pytest.approx(0.25)
    assert sub["recall@4"] == pytest.approx(1.0)


def test_no_evaluated_users_gives_nan():
    out = evaluate({}, {"u": set()}, ks=(5,))
    assert out["users"] == 0
    assert math.isnan(out["ndcg@5"])


def test_coverage_and_seen_share_standalone():
    # all users in RECS: top-1 items a, x, a -> {a, x} = 2/5
    assert coverage_at_k(RECS, 5, 1) == pytest.approx(0.4)
    # u1 top-2 [a,b] all seen = 1; u2 [x,y] 0; u4 [a,q] no history = 0 -> 1/3
    assert seen_share_at_k(RECS, HISTORY, 2) == pytest.approx(1 / 3)


def test_invalid_k():
    with pytest.raises(ValueError):
        precision_at_k(REC1, TRUTH1, 0)
    with pytest.raises(ValueError):
        evaluate(REC1, TRUTH1, ks=())


def test_split_repeat_new():
    truth = {"u1": {"a", "b", "c"}, "u2": {"d"}, "u3": {"e"}}
    history = {"u1": {"a", "z"}, "u3": {"e"}}
    repeat, new = split_repeat_new(truth, history)
    assert repeat == {"u1": {"a"}, "u3": {"e"}}
    assert new == {"u1": {"b", "c"}, "u2": {"d"}}


def test_relative_gain_is_the_paired_gain_over_the_baseline_mean() -> None:
    from recommender.evaluation.metrics import relative_gain

    g = relative_gain(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 1.0]))
    assert g["gain"] == 1.0 and g["stderr"] == round(1 / np.sqrt(3), 4) and g["z"] == round(np.sqrt(3), 2)
    assert np.isnan(relative_gain(np.array([1.0, 2.0]), np.array([0.0, 0.0]))["gain"])
