"""The repeat-purchase model: items due again at their rhythm, durables never."""

from __future__ import annotations

from datetime import date, timedelta

import pyarrow.compute as pc
from factories import NOW, ev, events

from recommender.data.demo import generate_shop
from recommender.models.repeat import (
    RepeatIndex,
    repeat_candidates,
)
from recommender.serving.policy import next_purchase


def score_of(index: RepeatIndex, user: str, item: str) -> float:
    picks = {p.item_id: p for p in index.due_items(user, 1000, min_score=0.0)}
    return picks[item].score if item in picks else 0.0


def monthly_log(last_days_ago: float) -> list[dict]:
    """Customer "u" buys coffee every 30 days, the last time ``last_days_ago`` days before NOW; three other
    customers buy the same coffee every 30 days too, and everyone buys a few one-off items."""
    rows = [ev("u", "coffee", "purchase", last_days_ago + 30 * k) for k in range(6)]
    for j, other in enumerate(("a", "b", "c")):
        rows += [ev(other, "coffee", "purchase", 3 + 7 * j + 30 * k) for k in range(6)]
        rows.append(ev(other, f"once-{other}", "purchase", 40 + j))
    rows.append(ev("u", "kettle", "purchase", 100))
    return rows


def test_monthly_buyer_gets_the_item_when_due_with_the_expected_date():
    index = repeat_candidates(events(monthly_log(28)), NOW, horizon_days=7)
    picks = index.due_items("u", 5)
    assert picks and picks[0].item_id == "coffee" and picks[0].reason == "due_again"
    expected = (NOW - timedelta(days=28) + timedelta(days=30)).date()
    assert abs(date.fromisoformat(picks[0].due) - expected) <= timedelta(days=1)
    assert picks[0].score > 0.5


def test_monthly_buyer_does_not_get_it_right_after_buying():
    due = score_of(repeat_candidates(events(monthly_log(28)), NOW, horizon_days=7), "u", "coffee")
    just_bought = repeat_candidates(events(monthly_log(1)), NOW, horizon_days=7)
    assert score_of(just_bought, "u", "coffee") < 0.05 * due
    assert "coffee" not in {p.item_id for p in just_bought.due_items("u", 5)}  # below the default min_score


def test_overdue_item_is_due_from_today():
    index = repeat_candidates(events(monthly_log(45)), NOW, horizon_days=7)
    (pick,) = index.due_items("u", 1)
    assert pick.item_id == "coffee" and pick.due == NOW.date().isoformat()


def test_durables_are_never_due():
    rows = [ev(u, item, "purchase", d) for u, d in (("a", 50), ("b", 20), ("c", 5)) for item in ("tent", "stove")]
    rows += [ev("a", "soap", "purchase", d) for d in (60, 40, 20)]
    index = repeat_candidates(events(rows), NOW, horizon_days=30)
    for user in "abc":
        assert not {"tent", "stove"} & {p.item_id for p in index.due_items(user, 10, min_score=0.0)}
    assert [p.item_id for p in index.due_items("a", 10, min_score=0.0)] == ["soap"]
    # and the blended list never brings them back as "due again"
    picks = next_purchase(index, "b", [("lamp", 0.9)], 5)
    assert [(p.item_id, p.reason) for p in picks] == [("lamp", "goes_with_your_purchases")]


def test_items_typical_interval_helps_a_single_purchase():
    rows = []
    for j in range(6):  # six regulars buy tea every 20 days
        rows += [ev(f"r{j}", "tea", "purchase", 2 + 3 * j + 20 * k) for k in range(6)]
    rows += [ev("x", "tea", "purchase", 19), ev("y", "tea", "purchase", 1)]
    rows += [ev(u, "bread", "purchase", d) for u in ("x", "y") for d in (30, 15, 2)]
    index = repeat_candidates(events(rows), NOW, horizon_days=5)
    due_x = {p.item_id: p for p in index.due_items("x", 5, min_score=0.0)}["tea"]
    assert abs(date.fromisoformat(due_x.due) - (NOW - timedelta(days=19) + timedelta(days=20)).date()) <= timedelta(
        days=1
    )
    assert due_x.score > 4 * score_of(index, "y", "tea")


def test_irregular_frequent_item_is_not_zeroed_out():
    gaps = [1, 30, 2, 25, 3, 20, 1, 15]  # often, but without a rhythm
    days, rows = 120.0, []
    for g in gaps:
        days -= g
        rows.append(ev("u", "milk", "purchase", days))
    rows += [ev("v", "milk", "purchase", d) for d in (90, 60, 35, 33)]
    rows += [ev("u", "jam", "purchase", d) for d in (100, 40)]
    index = repeat_candidates(events(rows), NOW, horizon_days=7)
    assert index.due_items("u", 2)[0].item_id == "milk"


def test_demo_cycle_buyers_get_their_consumable_when_due():
    shop = generate_shop(n_users=800, n_items=200, days=150, seed=7)
    purchases = shop.events.filter(pc.equal(shop.events["event_type"], "purchase"))
    as_of = pc.max(shop.events["timestamp"]).as_py()
    last: dict[tuple[str, str], object] = {}
    for row in purchases.select(["user_id", "item_id", "timestamp"]).to_pylist():
        key = (row["user_id"], row["item_id"])
        last[key] = max(last.get(key, row["timestamp"]), row["timestamp"])
    index = repeat_candidates(shop.events, as_of, horizon_days=14)
    due_scores, fresh_scores, found = [], [], 0
    for user, cycles in shop.truth.cycle_buyers.items():
        picks = next_purchase(index, user, [], 10)
        for item, cycle in cycles:
            since = as_of - last[(user, item)]
            if timedelta(0) <= timedelta(days=cycle) - since <= timedelta(days=14):
                due_scores.append(score_of(index, user, item))
                found += any(p.item_id == item and p.reason == "due_again" for p in picks)
            elif since < timedelta(days=0.25 * cycle):
                fresh_scores.append(score_of(index, user, item))
    assert len(due_scores) > 30 and found / len(due_scores) > 0.9
    assert len(fresh_scores) > 10
    due_scores.sort(), fresh_scores.sort()
    assert fresh_scores[len(fresh_scores) // 2] < 0.5 * due_scores[len(due_scores) // 2]
    assert not shop.truth.durables & set(index.item_ids.tolist())
