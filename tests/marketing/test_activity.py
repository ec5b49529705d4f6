"""What the job keeps for the dashboard: each customer's latest events, and who buys an item again and how often."""

from __future__ import annotations

from factories import NOW, ev, events

from recommender.marketing.activity import expand, item_repeat_stats, recent_events


def test_recent_events_keep_the_latest_purchases_and_other_events_of_buyers_only():
    rows = [ev("a", f"i{k}", "purchase", days_ago=k) for k in range(8)]
    rows += [ev("a", "v", "view", days_ago=0.5), ev("b", "v", "view", days_ago=1)]
    out = dict(recent_events(events(rows), per_kind=3))
    assert list(out) == ["a"]
    shown = [expand(r) for r in out["a"]]
    assert [(r["item_id"], r["event_type"]) for r in shown] == [
        ("i0", "purchase"),
        ("v", "view"),
        ("i1", "purchase"),
        ("i2", "purchase"),
    ]
    assert shown[0]["timestamp"] == NOW.isoformat(timespec="seconds") and shown[0]["quantity"] == 1.0
    assert len(out["a"][1]) == 3  # a view is stored without quantity and price
    older = expand(["i9", "purchase", "2026-06-01T10:00:00", 2.0, 3.5])  # as the first release stored them
    assert older == {
        "item_id": "i9",
        "event_type": "purchase",
        "timestamp": "2026-06-01T10:00:00",
        "quantity": 2.0,
        "price": 3.5,
    }


def test_item_repeat_stats_count_purchase_days_per_buyer():
    rows = [ev("a", "x", "purchase", d) for d in (0, 10, 20)] + [ev("a", "x", "purchase", 20.01)]
    rows += [ev("b", "x", "purchase", 5), ev("c", "y", "purchase", 1), ev("c", "x", "view", 1)]
    stats = dict(item_repeat_stats(events(rows)))
    x = stats["x"]
    assert (x["buyers"], x["repeat_buyers"], x["purchase_days"]) == (2, 1, 4)
    assert x["buy_counts"]["1"] == 1 and x["buy_counts"]["3"] == 1
    assert x["top_repeat_buyers"] == [["a", 3, 10.0]] and x["median_gap_days"] == 10.0
    assert stats["y"]["repeat_buyers"] == 0 and stats["y"]["median_gap_days"] is None
