"""The merchandising controls as pure functions: exclusion, boost and bury by rank, pins, diversity, rotation."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from recommender.serving.merchandising import Merchandising, Rotation, Rule, arrange

NOW = datetime(2026, 12, 1, 12, 0)
CATS = {f"i{k}": ("tea" if k % 2 else "coffee") for k in range(20)}


def entries(k: int = 20) -> list[dict]:
    return [{"item_id": f"i{j}", "score": float(k - j), "reason": "picked_for_you"} for j in range(k)]


def ids(answer: list[dict]) -> list[str]:
    return [e["item_id"] for e in answer]


def run(rules: dict[str, Rule] | None = None, items: dict | None = None, **kw) -> list[dict]:
    return arrange(
        "recommend", entries(), kw.pop("n", 10), CATS.get, Merchandising(rules or {}, items or {}), NOW, **kw
    )


def test_without_controls_the_list_is_cut_as_it_is():
    assert ids(run()) == [f"i{j}" for j in range(10)]


def test_unavailable_and_excluded_items_leave_and_the_list_refills():
    answer = run({"deny": Rule(kind="exclude", item_ids=["i1", "i2"])}, {"i0": {"available": False}})
    assert ids(answer) == [f"i{j}" for j in range(3, 13)]


def test_exclude_by_category():
    assert all(CATS[i] == "coffee" for i in ids(run({"no-tea": Rule(kind="exclude", category="tea")})))


def test_boost_divides_the_rank_and_says_so():
    answer = run({"b": Rule(kind="boost", item_ids=["i9"], factor=2.0)})
    assert ids(answer).index("i9") == 5  # rank 10 / 2 = 5, right after the item ranked 5th (ties keep model order)
    assert answer[5]["reason"] == "boosted"
    assert all(e["reason"] == "picked_for_you" for e in answer if e["item_id"] != "i9")


def test_bury_multiplies_the_rank():
    answer = run({"b": Rule(kind="bury", item_ids=["i0"], factor=0.25)})
    assert ids(answer).index("i0") == 2  # rank 1 / 0.25 = 4, tied with the item ranked 4th: model order first
    assert answer[2]["reason"] == "picked_for_you"


def test_pin_takes_its_position_even_when_the_model_did_not_rank_it():
    answer = run({"p": Rule(kind="pin", item_id="x", position=2)})
    assert ids(answer)[1] == "x" and answer[1]["reason"] == "pinned" and len(answer) == 10
    answer = run({"p": Rule(kind="pin", item_id="i15", position=1)})
    assert ids(answer)[0] == "i15" and ids(answer).count("i15") == 1


def test_pinned_unavailable_item_is_not_shown():
    answer = run({"p": Rule(kind="pin", item_id="x", position=2)}, {"x": {"available": False}})
    assert "x" not in ids(answer)


def test_rules_apply_only_to_their_lists_and_time_window():
    later = Rule(kind="exclude", item_ids=["i0"], starts=NOW + timedelta(hours=1))
    elsewhere = Rule(kind="exclude", item_ids=["i1"], lists=["bestsellers"])
    over = Rule(kind="exclude", item_ids=["i2"], starts=NOW - timedelta(days=2), ends=NOW - timedelta(days=1))
    assert ids(run({"a": later, "b": elsewhere, "c": over}))[:3] == ["i0", "i1", "i2"]


def test_diversity_caps_each_category():
    answer = run(diversity=2, n=10)
    assert len(answer) == 4  # two categories, two each
    assert max(ids(answer).count(i) for i in ids(answer)) == 1


def test_rotation_demotes_items_shown_often_without_a_click():
    seen = [("impression", "i0", NOW - timedelta(minutes=m)) for m in range(5)]
    seen += [("impression", "i1", NOW - timedelta(minutes=m)) for m in range(5)] + [("click", "i1", NOW)]
    tired = Rotation(impressions=5).tired(seen, NOW)
    assert tired == {"i0"}
    assert ids(run(tired=tired))[:2] == ["i1", "i2"]
    assert Rotation(impressions=5, window=timedelta(minutes=2)).tired(seen, NOW) == frozenset()


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "pin", "item_id": "i1"},
        {"kind": "boost", "factor": 2},
        {"kind": "boost", "category": "tea", "factor": 0.5},
        {"kind": "bury", "category": "tea", "factor": 3},
        {"kind": "exclude", "item_ids": ["i1"], "starts": "2026-12-02T00:00:00", "ends": "2026-12-01T00:00:00"},
        {"kind": "shuffle", "item_ids": ["i1"]},
    ],
)
def test_invalid_rules_are_refused(body):
    with pytest.raises(ValidationError):
        Rule.model_validate(body)
