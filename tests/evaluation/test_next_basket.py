"""The next-basket protocol on a hand-made log: exact targets and exact metric values."""

from __future__ import annotations

import json
import math
from datetime import timedelta

import pytest
from factories import NOW, ev, events

from recommender.config import AlsParams
from recommender.evaluation.next_basket import MODELS, evaluate_next_basket

CUTOFF = NOW - timedelta(days=10)


def buy(user: str, order: str, days_ago: float, *items: str) -> list[dict]:
    return [ev(user, item, "purchase", days_ago, order_id=order) for item in items]


def log():
    return events(
        buy("a", "a1", 30, "x")
        + buy("a", "a2", 20, "x", "y")
        + buy("a", "a3", 12, "z")
        + [ev("a", "q", "view", 11)]
        + buy("a", "a4", 8, "x", "w")  # a's first order after the cut-off: the target
        + buy("a", "a5", 5, "y")  # a later order: not a target
        + buy("b", "b1", 15, "w")  # one order before: not evaluated
        + buy("b", "b2", 7, "x")
        + buy("c", "c1", 25, "w")  # two orders before but none after: not evaluated
        + buy("c", "c2", 14, "y")
        + buy("d", "d1", 40, "x")  # the first order after the 10-day window does not count
        + buy("d", "d2", 35, "z")
        + buy("d", "d3", -1, "x")
    )


NDCG_HIT_AT_1 = 1 / (1 + 1 / math.log2(3))  # one of two targets at rank 1, with k = 2
NDCG_HIT_AT_2 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))


@pytest.fixture(scope="module")
def result():
    return evaluate_next_basket(log(), test_days=10, cutoff=CUTOFF, k=(2,), als=AlsParams(factors=2, iterations=3))


def test_setup_counts_the_one_evaluated_customer(result):
    setup = result["next_basket_setup"]
    assert setup["users"] == 1 and setup["users_with_repeat_items"] == 1 and setup["users_with_new_items"] == 1
    assert setup["repeat_item_share"] == 0.5 and setup["mean_basket_size"] == 2.0
    assert setup["cutoff"].startswith(str(CUTOFF.date()))
    assert json.loads(json.dumps(result)) == result  # JSON-ready


def test_every_model_reports_every_metric(result):
    assert list(result["next_basket"]) == list(MODELS)
    keys = {f"{p}{m}@2" for p in ("", "repeat_", "new_") for m in ("recall", "ndcg")}
    assert all(set(row) == keys for row in result["next_basket"].values())


def test_exact_values_for_known_rankings(result):
    rows = result["next_basket"]
    # personal top frequency: x (2 orders), z (newer than y): [x, z]; target {x, w}
    assert rows["personal_top_frequency"] == pytest.approx(
        {
            "recall@2": 0.5,
            "ndcg@2": round(NDCG_HIT_AT_1, 4),
            "repeat_recall@2": 1.0,
            "repeat_ndcg@2": 1.0,
            "new_recall@2": 0.0,
            "new_ndcg@2": 0.0,
        }
    )
    # most recent: z (12 days ago), then x and y (20 days ago, tie by id): [z, x]
    assert rows["most_recent"] == pytest.approx(
        {
            "recall@2": 0.5,
            "ndcg@2": round(NDCG_HIT_AT_2, 4),
            "repeat_recall@2": 1.0,
            "repeat_ndcg@2": round(1 / math.log2(3), 4),
            "new_recall@2": 0.0,
            "new_ndcg@2": 0.0,
        }
    )
    # popularity by distinct users before the cut-off: w (b, c), x (a, d), y (a, c), z (a, d) tie at 2, q (one
    # view) follows; ties by id: [w, x]
    assert rows["global_popularity"] == pytest.approx(
        {
            "recall@2": 1.0,
            "ndcg@2": 1.0,
            "repeat_recall@2": 1.0,
            "repeat_ndcg@2": round(1 / math.log2(3), 4),
            "new_recall@2": 1.0,
            "new_ndcg@2": 1.0,
        }
    )
    # the repeat model: only x was ever bought twice by anyone, so it is a's only candidate
    assert rows["repeat_only"] == pytest.approx(
        {
            "recall@2": 0.5,
            "ndcg@2": round(NDCG_HIT_AT_1, 4),
            "repeat_recall@2": 1.0,
            "repeat_ndcg@2": 1.0,
            "new_recall@2": 0.0,
            "new_ndcg@2": 0.0,
        }
    )
    # the published list starts with the same due item; exploration fills the rest with items a never bought
    assert rows["next_purchase"]["repeat_recall@2"] == 1.0 and rows["next_purchase"]["repeat_ndcg@2"] == 1.0


def test_model_subset_and_unknown_model():
    only = evaluate_next_basket(log(), test_days=10, cutoff=CUTOFF, k=(1, 2), models=("most_recent",))
    assert list(only["next_basket"]) == ["most_recent"]
    assert only["next_basket"]["most_recent"]["recall@1"] == 0.0
    with pytest.raises(ValueError, match="unknown"):
        evaluate_next_basket(log(), test_days=10, cutoff=CUTOFF, models=("nope",))
