"""The next-purchase model: items due again at their rhythm, durables never, exploration at its share."""

from __future__ import annotations

import math
import random
from datetime import date, timedelta

import pyarrow.compute as pc
import pytest
from factories import NOW, ev, events

from recommender.data.demo import generate_shop
from recommender.models.repeat import (
    GOES_WITH,
    NextPick,
    RepeatIndex,
    pick_dict,
    pick_pair,
    repeat_candidates,
)
from recommender.serving.policy import merge_due_and_discovery, next_purchase


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


def _regulars(n_items: int) -> RepeatIndex:
    rows = [ev("u", f"i{j}", "purchase", d) for j in range(n_items) for d in (60, 30, 2 + j % 3)]
    return repeat_candidates(events(rows), NOW, horizon_days=60)


EXPLORE = [(f"new{j}", 1.0 - j / 100) for j in range(20)]


@pytest.mark.parametrize("share", [0.0, 0.1, 0.3, 0.5, 1.0])
def test_explore_share_is_respected_in_every_prefix(share):
    index = _regulars(12)
    picks = next_purchase(index, "u", EXPLORE, 10, explore_share=share, min_score=0.0)
    assert len(picks) == 10 and len({p.item_id for p in picks}) == 10
    for length in range(1, 11):
        explored = sum(p.reason == "goes_with_your_purchases" for p in picks[:length])
        assert explored == int(share * length + 1e-9)
    assert next_purchase(index, "u", EXPLORE, 5, explore_share=share, min_score=0.0) == picks[:5]
    for p in picks:
        assert (p.due is not None) == (p.reason == "due_again")
        assert p.reason in {"due_again", "goes_with_your_purchases"}
        assert isinstance(p, NextPick) and set(p.as_dict()) == {"item_id", "score", "reason", "due"}


def test_sources_fill_for_each_other():
    index = _regulars(3)
    picks = next_purchase(index, "u", EXPLORE, 10, explore_share=0.3)
    assert [p.reason for p in picks[:3]] == ["due_again"] * 3  # best due items first...
    assert sum(p.reason == "due_again" for p in picks) == 3  # ...and exploration takes the slots they leave
    short = next_purchase(_regulars(8), "u", EXPLORE[:1], 10, explore_share=0.5, min_score=0.0)
    assert len(short) == 9 and sum(p.reason == "goes_with_your_purchases" for p in short) == 1
    assert next_purchase(index, "nobody", [], 10) == []


def reference_blend(due: list[NextPick], explore: list, n: int, share: float) -> list[NextPick]:
    """The slot-by-slot merge as first written: every slot asks whether the share wants discovery now."""
    taken: set[str] = set()
    picks: list[NextPick] = []
    d = x = 0
    while len(picks) < n and (d < len(due) or x < len(explore)):
        want = math.floor(share * (len(picks) + 1) + 1e-9) > sum(p.reason == GOES_WITH for p in picks)
        if (want or d >= len(due)) and x < len(explore):
            item, score = explore[x]
            x += 1
            if item not in taken:
                picks.append(NextPick(item, score, GOES_WITH))
                taken.add(item)
        else:
            if due[d].item_id not in taken:
                picks.append(due[d])
                taken.add(due[d].item_id)
            d += 1
    return picks


@pytest.mark.parametrize("seed", range(40))
def test_merge_matches_the_slot_by_slot_reference(seed):
    rng = random.Random(seed)
    pool = [f"i{j}" for j in range(15)]  # small pool: due and explore items overlap often
    due = [NextPick(i, 0.5, "due_again", "2026-01-01") for i in rng.sample(pool, rng.randint(0, 8))]
    explore = [(i, round(rng.random(), 5)) for i in rng.sample(pool, rng.randint(0, 12))]
    n, share = rng.randint(0, 16), rng.choice([0.0, 0.1, 0.3, 0.5, 1.0])
    got = [
        p if isinstance(p, NextPick) else NextPick(p[0], p[1], GOES_WITH)
        for p in merge_due_and_discovery(due, explore, n, share)
    ]
    assert got == reference_blend(due, explore, n, share)


def test_blended_picks_publish_in_the_served_shapes():
    due = NextPick("a", 0.9, "due_again", "2026-01-01")
    assert pick_pair(due) == ("a", 0.9) and pick_pair(("b", 0.5)) == ("b", 0.5)
    assert pick_dict(due) == due.as_dict()
    assert pick_dict(("b", 0.5)) == NextPick("b", 0.5, GOES_WITH).as_dict()


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
