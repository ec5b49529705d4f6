"""Promotion gate: the decision rules, and a deliberately worse model refused on a real holdout evaluation."""

from __future__ import annotations

import math

import pytest

from recommender.config import AlsParams, ModelSettings
from recommender.data.demo import generate_shop
from recommender.evaluation.gate import GateDecision, decide, holdout_metrics


def test_publishes_a_model_as_good_as_the_current_one() -> None:
    d = decide(0.30, 0.30, 0.10)
    assert isinstance(d, GateDecision) and d.publish
    assert (d.candidate, d.current, d.baseline, d.metric) == (0.30, 0.30, 0.10, "ndcg@10")
    assert "passes" in d.reason


def test_margin_is_relative() -> None:
    assert decide(0.295, 0.30, 0.10, margin=0.02).publish  # 1.7 % worse: within 2 %
    refused = decide(0.29, 0.30, 0.10, margin=0.02)  # 3.3 % worse
    assert not refused.publish
    assert "more than 2% below the published model's 0.3000" in refused.reason and "keeps serving" in refused.reason
    assert decide(0.29, 0.30, 0.10, margin=0.05).publish


def test_refuses_a_model_below_recent_popularity_even_without_a_current_one() -> None:
    d = decide(0.09, None, 0.10)
    assert not d.publish and "below recent popularity (0.1000)" in d.reason
    assert decide(0.11, None, 0.10).publish


def test_force_publishes_and_says_what_it_overrode() -> None:
    d = decide(0.01, 0.30, 0.10, force=True)
    assert d.publish and d.reason.startswith("forced:") and "below recent popularity" in d.reason
    assert decide(0.4, 0.3, 0.1, force=True).reason.startswith("forced:")


def test_nothing_to_measure_publishes() -> None:
    d = decide(math.nan, 0.3, math.nan)
    assert d.publish and "no warm customer" in d.reason
    assert decide(0.3, math.nan, 0.1).current is None  # a manifest without a stored metric


def test_bad_margin() -> None:
    with pytest.raises(ValueError):
        decide(0.3, 0.3, 0.1, margin=1.5)


@pytest.fixture(scope="module")
def shop():
    return generate_shop(n_users=400, n_items=120, days=120, seed=11)


def test_gate_refuses_a_deliberately_worse_model(shop) -> None:
    good = holdout_metrics(shop.events, shop.items, ModelSettings(), test_days=21)
    assert good["metric"] == "ndcg@10" and good["target"] == "purchase" and good["users"] > 20
    assert set(good["figures"]["warm"]) == {"production", "recent_popularity", "tifu_knn"}
    assert good["tifu_knn"] == good["figures"]["warm"]["tifu_knn"]["ndcg@10"]
    # One factor, one iteration, and every slot given to those picks: a broken candidate.
    worse = ModelSettings(als=AlsParams(factors=1, iterations=1)).with_repeat_share(0.0)
    bad = holdout_metrics(shop.events, shop.items, worse, test_days=21)
    assert bad["recent_popularity"] == pytest.approx(good["recent_popularity"])  # same holdout, same baseline
    assert bad["candidate"] < good["candidate"]

    first = decide(good["candidate"], None, good["recent_popularity"])
    assert first.publish, first.reason
    refused = decide(bad["candidate"], good["candidate"], bad["recent_popularity"])
    assert not refused.publish and "keeps serving" in refused.reason
    again = decide(good["candidate"], good["candidate"], good["recent_popularity"])
    assert again.publish
    forced = decide(bad["candidate"], good["candidate"], bad["recent_popularity"], force=True)
    assert forced.publish and forced.reason.startswith("forced:")


def test_holdout_trains_only_before_the_holdout(shop) -> None:
    from datetime import timedelta

    import pyarrow.compute as pc

    res = holdout_metrics(shop.events, shop.items, test_days=14)
    newest = pc.max(shop.events["timestamp"]).as_py()
    assert res["cutoff"] == (newest - timedelta(days=14)).isoformat()


def test_gate_scores_a_fixed_sample_when_capped(shop) -> None:
    full = holdout_metrics(shop.events, shop.items, test_days=21, max_users=None)
    capped = holdout_metrics(shop.events, shop.items, test_days=21, max_users=20)
    again = holdout_metrics(shop.events, shop.items, test_days=21, max_users=20)
    assert full["users"] > 20 and capped["users"] == 20
    assert capped["candidate"] == again["candidate"]  # the same sample on a rerun
    assert holdout_metrics(shop.events, shop.items, test_days=21, max_users=10_000)["candidate"] == full["candidate"]


def test_decision_reports_tifu_knn_without_refusing_on_it() -> None:
    behind = decide(0.30, None, 0.10, tifu_knn_metric=0.40)
    assert behind.publish and "TIFU-KNN 0.4000 (-25.0%)" in behind.reason
    ahead = decide(0.44, None, 0.10, tifu_knn_metric=0.40)
    assert ahead.publish and "(+10.0%)" in ahead.reason
    assert "TIFU-KNN" not in decide(0.44, None, 0.10, tifu_knn_metric=float("nan")).reason
