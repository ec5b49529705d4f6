"""The offline serving policy: items due again merged with discovery at the configured share, in the served shapes
(the lists the job publishes and the evaluation scores)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from factories import NOW, ev, events

from recommender.models.repeat import GOES_WITH, NextPick, RepeatIndex, pick_dict, pick_pair, repeat_candidates
from recommender.serving.policy import merge_due_and_discovery, next_purchase, production_list


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


@pytest.mark.parametrize("seed", range(20))
def test_merge_with_items_repeated_in_discovery_matches_the_reference(seed):
    rng = random.Random(seed)
    pool = [f"i{j}" for j in range(10)]
    due = [NextPick(i, 0.5, "due_again", "2026-01-01") for i in rng.sample(pool, rng.randint(0, 4))]
    explore = [(i, round(rng.random(), 5)) for i in rng.choices(pool, k=rng.randint(1, 14))]  # repeats
    n, share = rng.randint(1, 12), rng.choice([0.0, 0.3, 1.0])
    got = merge_due_and_discovery(due, explore, n, share)
    assert len({p.item_id if isinstance(p, NextPick) else p[0] for p in got}) == len(got)
    as_picks = [p if isinstance(p, NextPick) else NextPick(p[0], p[1], GOES_WITH) for p in got]
    assert as_picks == reference_blend(due, explore, n, share)


def test_blended_picks_publish_in_the_served_shapes():
    due = NextPick("a", 0.9, "due_again", "2026-01-01")
    assert pick_pair(due) == ("a", 0.9) and pick_pair(("b", 0.5)) == ("b", 0.5)
    assert pick_dict(due) == due.as_dict()
    assert pick_dict(("b", 0.5)) == NextPick("b", 0.5, GOES_WITH).as_dict()


def test_production_list_blend() -> None:
    repeats = RepeatIndex(
        np.array(["u1", "u1"], dtype=object),
        np.array(["a", "b"], dtype=object),
        np.array([0.9, 0.6]),
        np.array(["2026-07-01", "2026-07-02"], dtype="datetime64[D]"),
    )
    explore = [("x", 1.0), ("a", 0.9), ("y", 0.5)]
    full = [p.item_id for p in production_list(repeats, "u1", explore, 4, repeat_share=1.0)]
    assert full == ["a", "b", "x", "y"]  # due first, then discovery; never twice
    first = production_list(repeats, "u1", explore, 4, repeat_share=0.0)[0]
    assert first.item_id == "x" and first.reason != "due_again"
    assert [p.item_id for p in production_list(repeats, "nobody", explore, 3)] == ["x", "a", "y"]
