"""The online serving policy (recommender.serving.policy) on plain values: no HTTP, no Redis.

The session model is the real one (recommender.models.session.SessionModel) on hand-made item factors: items A* load
on the first factor, items B* on the second, so a visitor's live events point clearly at one group.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from recommender.models.session import SessionModel
from recommender.serving import policy

NOW = datetime(2026, 6, 29, 12, 0)
ITEMS = ["A1", "A2", "A3", "A4", "B1", "B2", "B3", "B4"]
CATEGORY = {i: {"title": i, "category": i[0], "price": 1.0} for i in ITEMS}
BEST = [["B4", 40.0], ["A4", 30.0], ["B3", 20.0], ["A3", 10.0]]


@pytest.fixture(scope="module")
def session() -> SessionModel:
    factors = np.array([[1.0, 0.05 * k] if i[0] == "A" else [0.05 * k, 1.0] for k, i in enumerate(ITEMS)])
    weights = {"view": 1.0, "cart": 2.0, "purchase": 4.0}
    return SessionModel(ITEMS, factors, regularization=0.01, alpha=1.0, weights=weights, half_life_days=30.0)


def events(*pairs: tuple[str, str]) -> list[tuple[str, str, datetime]]:
    """Live events newest first, one minute apart."""
    return [(kind, item, NOW - timedelta(minutes=k)) for k, (kind, item) in enumerate(pairs)]


def no_bestsellers() -> list:
    raise AssertionError("the bestsellers were decoded although no top-up was needed")


def test_personal_list_alone_is_cut_to_n_without_touching_the_bestsellers():
    personal = [["A1", 0.9], ["B1", 0.8], ["A2", 0.7]]
    answer = policy.recommendation(policy.visitor_candidates(personal, set()), 2, no_bestsellers)
    assert answer.source == "personal" and answer.entries == [["A1", 0.9], ["B1", 0.8]]


def test_exclude_leaves_items_out_of_the_picks_and_of_the_top_up():
    personal = [["A1", 0.9], ["B4", 0.8], ["A2", 0.7]]
    answer = policy.recommendation(policy.visitor_candidates(personal, {"A1", "A4"}), 4, lambda: BEST)
    assert answer.source == "personal+bestsellers"
    assert [e[0] for e in answer.entries] == ["B4", "A2", "B3", "A3"]  # B4 not twice, A4 excluded


def test_nobody_known_and_no_live_events_gets_bestsellers():
    answer = policy.recommendation(policy.visitor_candidates(None, set()), 3, lambda: BEST)
    assert answer.source == "bestsellers" and answer.entries == BEST[:3]


def test_everything_filtered_out_answers_bestsellers_alone():
    personal = [["A1", 0.9]]
    answer = policy.recommendation(policy.visitor_candidates(personal, {"A1"}), 2, lambda: BEST)
    assert answer.source == "bestsellers" and answer.entries == BEST[:2]


def test_unknown_visitor_gets_session_picks_from_the_group_they_viewed(session):
    live = events(("view", "B1"), ("view", "B2"))
    candidates = policy.visitor_candidates(None, set(), live, session, now=NOW)
    answer = policy.recommendation(candidates, 2, no_bestsellers)
    assert answer.source == "session"
    assert {e[0] for e in answer.entries} == {"B3", "B4"}  # the viewed items themselves are left out


def test_known_visitor_gets_session_blended_and_bought_items_drop_out(session):
    personal = [["A1", 0.9], ["A2", 0.8], ["A3", 0.7]]
    live = events(("purchase", "A1"), ("view", "B1"))
    candidates = policy.visitor_candidates(personal, set(), live, session, exclude_purchased=True, now=NOW)
    answer = policy.recommendation(candidates, 4, no_bestsellers)
    assert answer.source == "personal+session"
    picked = [e[0] for e in answer.entries]
    assert "A1" not in picked and {"A2", "A3"} <= set(picked)
    assert set(picked) - {"A2", "A3"}  # folded-in picks the stored list did not have
    assert "A1" in candidates.skip  # bought since the run: left out of any top-up too


def test_bought_items_stay_when_the_job_keeps_bought_items(session):
    personal = [["A1", 0.9], ["A2", 0.8]]
    live = events(("purchase", "A1"))
    candidates = policy.visitor_candidates(personal, set(), live, session, exclude_purchased=False, now=NOW)
    assert "A1" in [r[0] for r in candidates.ranked] and "A1" not in candidates.skip


def test_live_events_without_a_session_model_keep_the_personal_list():
    personal = [["A1", 0.9], ["A2", 0.8]]
    candidates = policy.visitor_candidates(personal, set(), events(("purchase", "A2")), None, now=NOW)
    assert candidates.sources == ["personal"] and candidates.ranked == [["A1", 0.9]]


def test_category_filter_uses_the_metadata_and_tops_up_from_the_category_bestsellers():
    personal = [["A1", 0.9], ["B1", 0.8], ["A2", 0.7], ["B2", 0.6]]
    best_of_b = [["B4", 4.0], ["B1", 3.0], ["B3", 2.0]]
    candidates = policy.visitor_candidates(personal, set())
    answer = policy.recommendation(candidates, 4, lambda: best_of_b, "B", CATEGORY)
    assert answer.source == "personal+bestsellers"
    assert [e[0] for e in answer.entries] == ["B1", "B2", "B4", "B3"]
    unknown_meta = policy.recommendation(candidates, 2, lambda: best_of_b, "B", {})
    assert unknown_meta.source == "bestsellers" and [e[0] for e in unknown_meta.entries] == ["B4", "B1"]


def test_recently_viewed_is_distinct_newest_first_and_counts_only_views():
    live = events(("view", "A2"), ("purchase", "B1"), ("view", "A1"), ("view", "A2"), ("view", "B3"))
    assert policy.recently_viewed(live, 10) == [["A2", 1.0], ["A1", 0.5], ["B3", 0.33333]]
    assert policy.recently_viewed(live, 2) == [["A2", 1.0], ["A1", 0.5]]


def test_arrivals_in_the_visitors_categories_come_first_in_the_order_they_like_them():
    fresh = [["A3", 5.0], ["C1", 4.0], ["B3", 3.0], ["A4", 2.0]]
    personal = [["B1", 0.9], ["A1", 0.8], ["B2", 0.7]]
    meta = {**CATEGORY, "C1": {"category": "C"}}
    assert [r[0] for r in policy.arrivals_for(fresh, personal, meta)] == ["B3", "A3", "A4", "C1"]


@pytest.mark.parametrize(
    "segment,expected_strategy,expected_first,reason",
    [
        ("champions", None, None, None),
        (None, "due_again", "A1", "due_again"),
    ],
)
def test_segment_picks_follow_the_segment_strategy(segment, expected_strategy, expected_first, reason):
    from recommender.marketing.rfm import SEGMENTS

    picks = [{"item_id": "A1", "score": 0.9, "reason": "due_again", "due": "2026-07-01"}]
    personal, fresh, best = [["B1", 0.8]], [["C1", 5.0]], [["B4", 40.0]]
    seg = {"segment": segment} if segment else None
    strategy, entries = policy.segment_picks(seg, picks, personal, fresh, best)
    expected_strategy = expected_strategy or SEGMENTS[segment].strategy
    assert strategy == expected_strategy
    by_strategy = {
        "new_arrivals": ("C1", "new_arrival"),
        "bestsellers": ("B4", "bestseller"),
        "personal": ("B1", "goes_with_your_purchases"),
        "due_again": ("A1", "due_again"),
    }
    assert (entries[0]["item_id"], entries[0]["reason"]) == by_strategy[strategy]


def test_every_segment_strategy_is_one_the_policy_knows():
    from recommender.marketing.rfm import SEGMENTS

    picks = [{"item_id": "A1", "score": 0.9, "reason": "due_again", "due": "2026-07-01"}]
    for name in SEGMENTS:
        strategy, _ = policy.segment_picks({"segment": name}, picks, [["B1", 0.8]], [["C1", 5.0]], [["B4", 4.0]])
        assert strategy == SEGMENTS[name].strategy, name


def test_a_strategy_with_an_empty_list_falls_back_to_the_next_purchase_list():
    from recommender.marketing.rfm import SEGMENTS

    picks = [{"item_id": "A1", "score": 0.9, "reason": "due_again", "due": "2026-07-01"}]
    for name, info in SEGMENTS.items():
        strategy, entries = policy.segment_picks({"segment": name}, picks, None, [], [])
        assert (strategy, entries) == ("due_again", picks), (name, info.strategy)
