"""The compiled rules (recommender.serving.rule_book) give the answers of evaluating every rule on every item."""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from recommender.serving.merchandising import LIST_KINDS, Merchandising, Rule, arrange
from recommender.serving.rule_book import RuleBook, compile_rules

NOW = datetime(2026, 12, 1, 12, 0)
CATEGORIES = ["tea", "coffee", "cups", "cakes"]
FACTORS = [1.5, 2.0, 3.0, 4.0, 0.75, 0.5, 0.25]  # products of these are exact, so the order of multiplying is moot


def reference(kind, entries, n, category_of, merch, now, diversity=None, tired=frozenset(), rotation_factor=0.25):
    """arrange() written as the rules read: every active rule checked against every item."""
    rules = [r for r in merch.rules.values() if r.applies(kind, now)]

    def gone(item):
        return merch.items.get(item, {}).get("available") is False or any(
            r.kind == "exclude" and r.matches(item, category_of(item)) for r in rules
        )

    ranked = [e for e in entries if not gone(e["item_id"])]
    keyed = []
    for rank, entry in enumerate(ranked):
        factor = 1.0
        for rule in rules:
            if rule.kind in ("boost", "bury") and rule.matches(entry["item_id"], category_of(entry["item_id"])):
                factor *= rule.rank_factor
        if entry["item_id"] in tired:
            factor *= rotation_factor
        keyed.append(((rank + 1) / factor, rank, entry, factor))
    keyed.sort(key=lambda k: (k[0], k[1]))
    ranked = [{**e, "reason": "boosted"} if f > 1 and place < r else e for place, (_, r, e, f) in enumerate(keyed)]
    if diversity is not None:
        seen, capped = Counter(), []
        for e in ranked:
            c = category_of(e["item_id"])
            if c is None or seen[c] < diversity:
                seen[c] += c is not None
                capped.append(e)
        ranked = capped
    pins = sorted((r for r in rules if r.kind == "pin" and not gone(r.item_id)), key=lambda r: r.position)
    out = [e for e in ranked if e["item_id"] not in {r.item_id for r in pins}][:n]
    known = {e["item_id"]: e for e in entries}
    for r in pins:
        out.insert(
            min(r.position - 1, len(out)),
            {**(known.get(r.item_id) or {"item_id": r.item_id, "score": 0.0}), "reason": "pinned"},
        )
    return out[:n]


def random_rule(rng: random.Random, items: list[str]) -> Rule:
    kind = rng.choice(["boost", "bury", "pin", "exclude", "boost", "bury"])
    body: dict = {"kind": kind}
    if kind == "pin":
        body.update(item_id=rng.choice(items + ["unranked"]), position=rng.randint(1, 12))
    else:
        if rng.random() < 0.6:
            body["item_ids"] = rng.sample(items, rng.randint(1, 4)) * rng.choice([1, 1, 2])
        if "item_ids" not in body or rng.random() < 0.3:
            body["category"] = rng.choice(CATEGORIES)
        if kind in ("boost", "bury") and rng.random() < 0.8:
            body["factor"] = rng.choice([f for f in FACTORS if (f > 1) == (kind == "boost")])
    if rng.random() < 0.3:
        body["lists"] = rng.sample(LIST_KINDS, rng.randint(1, 3))
    if rng.random() < 0.3:
        body["starts"] = NOW + timedelta(hours=rng.randint(-3, 3))
    if rng.random() < 0.3:
        body["ends"] = body.get("starts", NOW - timedelta(hours=4)) + timedelta(hours=rng.randint(1, 4))
    return Rule.model_validate(body)


@pytest.mark.parametrize("seed", range(40))
def test_compiled_rules_answer_like_every_rule_checked_on_every_item(seed):
    rng = random.Random(seed)
    items = [f"i{k}" for k in range(40)]
    cats = {i: rng.choice(CATEGORIES + [None]) for i in items + ["unranked"]}
    rules = {f"r{k}": random_rule(rng, items) for k in range(rng.randint(0, 30))}
    live = {i: {"available": False} for i in rng.sample(items, rng.randint(0, 3))}
    merch = Merchandising(rules, live)  # one state asked at many times: its compiled spans must follow the clock
    times = [NOW + timedelta(minutes=m) for m in range(-300, 301, 30)] + [r.starts for r in rules.values() if r.starts]
    rng.shuffle(times)
    for now in times:
        kind = rng.choice(LIST_KINDS)
        entries = [{"item_id": i, "score": 1.0 / (k + 1), "reason": "picked_for_you"} for k, i in enumerate(items)]
        rng.shuffle(entries)
        options = {
            "diversity": rng.choice([None, None, 1, 3]),
            "tired": frozenset(rng.sample(items, rng.randint(0, 3))),
        }
        n = rng.choice([5, 10, 30])
        expected = reference(kind, entries, n, cats.get, merch, now, **options)
        assert arrange(kind, entries, n, cats.get, merch, now, **options) == expected, (seed, kind, now)


def test_factors_of_matching_rules_multiply_once_per_rule():
    rules = [
        Rule(kind="boost", category="tea", factor=2.0),
        Rule(kind="boost", item_ids=["a", "a"], factor=3.0),
        Rule(kind="bury", item_ids=["a", "b"], category="tea", factor=0.5),  # matches "a" once, in or out of tea
    ]
    compiled = compile_rules(rules)
    assert compiled.effect("a", "tea") == 2.0 * 3.0 * 0.5
    assert compiled.effect("a", "cups") == compiled.effect("a", None) == 3.0 * 0.5
    assert compiled.effect("b", "cups") == 0.5
    assert compiled.effect("c", "tea") == 2.0 * 0.5
    assert compiled.effect("c", "cups") == 1.0


def test_excluded_and_unavailable_items_leave():
    compiled = compile_rules([Rule(kind="exclude", item_ids=["a"]), Rule(kind="exclude", category="tea")], ["u"])
    effects = [compiled.effect(i, c) for i, c in [("a", "cups"), ("b", "cups"), ("u", None), ("c", "tea"), ("d", None)]]
    assert effects == [None, 1.0, None, None, 1.0]


def test_the_compiled_rules_change_when_a_window_starts_or_ends():
    window = Rule(kind="exclude", item_ids=["a"], starts=NOW, ends=NOW + timedelta(hours=1))
    pin = Rule(kind="pin", item_id="p", position=2, lists=["recommend"], ends=NOW + timedelta(hours=2))
    book = RuleBook([window, pin])
    before = book.for_list("recommend", NOW - timedelta(seconds=1))
    assert before.effect("a", None) == 1.0 and before.pins == (("p", 2),)
    assert book.for_list("recommend", NOW).effect("a", None) is None  # starts: from then on
    assert book.for_list("recommend", NOW + timedelta(minutes=59)) is book.for_list("recommend", NOW)
    after = book.for_list("recommend", NOW + timedelta(hours=1))  # ends: no longer at that time
    assert after.effect("a", None) == 1.0 and after.pins == (("p", 2),)
    assert book.for_list("recommend", NOW + timedelta(hours=2)).pins == ()
    assert book.for_list("bestsellers", NOW - timedelta(seconds=1)).pins == ()
    assert book.for_list("recommend", NOW - timedelta(days=1)).pins == (("p", 2),)  # the clock may go back
    epoch = NOW.replace(tzinfo=timezone.utc).timestamp()
    assert book.next_change(epoch - 1) == epoch and book.next_change(epoch) == epoch + 3600
    assert book.next_change(epoch + 7200) == math.inf


def test_a_pinned_item_that_a_rule_excludes_is_not_shown_even_when_not_ranked():
    merch = Merchandising(
        {"pin": Rule(kind="pin", item_id="x", position=1), "deny": Rule(kind="exclude", category="tea")}
    )
    entries = [{"item_id": f"i{k}", "score": 1.0, "reason": "bestseller"} for k in range(5)]
    answer = arrange("bestsellers", entries, 3, {"x": "tea"}.get, merch, NOW)
    assert [e["item_id"] for e in answer] == ["i0", "i1", "i2"]
