"""Merchandising controls applied to every list answer at request time: the live catalogue (availability and
metadata updates between nightly runs), boost / bury / pin / exclude rules, a per-category diversity cap, rotation
of items a visitor keeps seeing without clicking, and a reason on every slot.

Pure functions over plain data: the API loads the rules and catalogue updates from Redis (:mod:`cache.merch`) and
calls :func:`arrange` on every list it answers.

How rules move items: a list's order is the model's ranking. A boost of ``f`` divides an item's rank by ``f`` (a
boost of 2 moves the 10th item up to about the 5th place), a bury multiplies it (a bury of 0.5 moves the 5th item
down to about the 10th); items with equal ranks after that keep the model's order. Ranking by rank rather than by
score keeps lists whose scores are not comparable (personal picks topped up with bestsellers) in a sensible order.
Excluded and unavailable items leave every list; a pinned item takes its position (counted from 1) whether or not
the model ranked it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from recommender.data.loading import ID_PATTERN
from recommender.data.schema import MAX_ID_LENGTH, MAX_PRICE

ListKind = Literal["recommend", "bestsellers", "new_arrivals", "similar", "next_purchase", "recently_viewed"]
LIST_KINDS: tuple[str, ...] = ListKind.__args__  # type: ignore[attr-defined]
RuleKind = Literal["boost", "bury", "pin", "exclude"]
ItemId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, examples=["85123A"])]
MAX_FACTOR = 100.0

REASONS: dict[str, str] = {
    "due_again": "bought before and due again (see `due`)",
    "goes_with_your_purchases": "new to the customer and close to what they buy",
    "picked_for_you": "the customer's personal model picks",
    "similar_to_what_you_viewed": "folded in from the visitor's live events",
    "bestseller": "among the most bought items lately",
    "new_arrival": "new in the shop",
    "similar_item": "bought by the same people as the item asked about",
    "same_category": "in the same category as the item asked about (a new item the model does not know yet)",
    "recently_viewed": "the visitor viewed it lately",
    "pinned": "placed here by a merchandising rule",
    "boosted": "moved up by a merchandising rule",
}
"""Every reason an item of a list answer can carry, with what it means (docs/MERCHANDISING.md)."""


class Rule(BaseModel):
    """One merchandising rule (the body of ``PUT /rules/{name}``)."""

    model_config = ConfigDict(extra="forbid")

    kind: RuleKind = Field(description="boost, bury, pin or exclude")
    item_id: ItemId | None = Field(None, description="pin: the pinned item")
    position: int | None = Field(None, ge=1, le=100, description="pin: the slot it takes, counted from 1")
    item_ids: list[ItemId] | None = Field(None, max_length=10_000, description="boost, bury, exclude: these items")
    category: str | None = Field(None, min_length=1, max_length=200, description="boost, bury, exclude: this category")
    factor: float | None = Field(
        None, gt=0, le=MAX_FACTOR, description="boost: > 1 (default 2); bury: < 1 (default 0.5); divides the rank"
    )
    lists: list[ListKind] | None = Field(None, description="list kinds the rule applies to (default: every list)")
    starts: datetime | None = Field(None, description="not applied before (UTC)")
    ends: datetime | None = Field(None, description="not applied from then on (UTC)")

    @model_validator(mode="after")
    def _fields_of_kind(self) -> Rule:
        if self.kind == "pin":
            if self.item_id is None or self.position is None:
                raise ValueError("a pin rule needs item_id and position")
        elif not self.item_ids and self.category is None:
            raise ValueError(f"a {self.kind} rule needs item_ids or category")
        if self.kind == "boost" and self.factor is not None and self.factor <= 1:
            raise ValueError("a boost factor must be above 1 (a bury takes factors below 1)")
        if self.kind == "bury" and self.factor is not None and self.factor >= 1:
            raise ValueError("a bury factor must be below 1 (a boost takes factors above 1)")
        if self.starts and self.ends and self.ends <= self.starts:
            raise ValueError("ends must be after starts")
        for name in ("starts", "ends"):  # compared with naive UTC times
            value = getattr(self, name)
            if value is not None and value.tzinfo is not None:
                setattr(self, name, value.astimezone(timezone.utc).replace(tzinfo=None))
        return self

    def applies(self, kind: str, now: datetime) -> bool:
        return (
            (self.lists is None or kind in self.lists)
            and (self.starts is None or self.starts <= now)
            and (self.ends is None or now < self.ends)
        )

    def matches(self, item_id: str, category: str | None) -> bool:
        return bool(self.item_ids and item_id in self.item_ids) or (
            self.category is not None and self.category == category
        )

    @property
    def rank_factor(self) -> float:
        return self.factor if self.factor is not None else (2.0 if self.kind == "boost" else 0.5)


class LiveItem(BaseModel):
    """A catalogue update (one element of the body of ``POST /items``): fields left out keep their values."""

    model_config = ConfigDict(extra="forbid")

    item_id: ItemId
    title: str | None = Field(None, max_length=1000)
    category: str | None = Field(None, min_length=1, max_length=200)
    price: float | None = Field(None, ge=0, le=MAX_PRICE)
    available: bool | None = Field(None, description="false: the item leaves every list at once")
    created_at: datetime | None = Field(None, description="first on sale (UTC); recent items join the new arrivals")


@dataclasses.dataclass(frozen=True)
class Merchandising:
    """The rules and live catalogue updates in force, as loaded from Redis."""

    rules: Mapping[str, Rule] = dataclasses.field(default_factory=dict)
    items: Mapping[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def unavailable(self) -> frozenset[str]:
        return frozenset(i for i, u in self.items.items() if u.get("available") is False)

    def active(self, kind: str, now: datetime) -> list[Rule]:
        return [r for r in self.rules.values() if r.applies(kind, now)]

    def metadata(self, item_id: str, stored: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """Title, category and price of an item: the live update over the published metadata."""
        update = self.items.get(item_id)
        if update is None:
            return dict(stored) if stored is not None else None
        out = dict(stored or {"title": None, "category": None, "price": None})
        out.update({k: update[k] for k in ("title", "category", "price") if update.get(k) is not None})
        return out

    def new_items(self, since: datetime) -> list[str]:
        """Available items the live catalogue added on or after ``since``, newest first."""
        fresh = [
            (u["created_at"], i)
            for i, u in self.items.items()
            if u.get("available") is not False and u.get("created_at") and u["created_at"] >= since.isoformat()
        ]
        return [i for _, i in sorted(fresh, reverse=True)]


@dataclasses.dataclass(frozen=True)
class Rotation:
    """Demote items a visitor was shown at least ``impressions`` times within ``window`` without clicking them."""

    impressions: int = 5
    window: timedelta = timedelta(days=1)
    factor: float = 0.25

    def tired(self, live_events: Iterable[tuple[str, str, datetime]], now: datetime) -> frozenset[str]:
        since = now - self.window
        shown: Counter[str] = Counter()
        clicked: set[str] = set()
        for kind, item, at in live_events:
            if at < since:
                continue
            if kind == "impression":
                shown[item] += 1
            elif kind in ("click", "cart", "purchase"):
                clicked.add(item)
        return frozenset(i for i, c in shown.items() if c >= self.impressions and i not in clicked)


def arrange(
    kind: str,
    entries: Sequence[dict[str, Any]],
    n: int,
    category_of: Callable[[str], str | None],
    merch: Merchandising,
    now: datetime,
    diversity: int | None = None,
    tired: frozenset[str] = frozenset(),
    rotation_factor: float = 0.25,
) -> list[dict[str, Any]]:
    """The first ``n`` entries of a list answer after the merchandising controls.

    ``entries`` are dicts with at least ``item_id``, ``score`` and ``reason``, best first. Unavailable and excluded
    items leave; boosts, buries and rotation (``tired`` items, rank divided by ``rotation_factor``) re-rank; at most
    ``diversity`` items per category are kept; pins take their positions last. Boosted items that moved up say
    ``boosted``, pinned ones ``pinned``."""
    rules = merch.active(kind, now)
    gone = merch.unavailable | _excluded(rules, entries, category_of)
    ranked = [e for e in entries if e["item_id"] not in gone]
    ranked = _rerank(ranked, [r for r in rules if r.kind in ("boost", "bury")], category_of, tired, rotation_factor)
    if diversity is not None:
        ranked = _capped(ranked, diversity, category_of)
    pins = sorted((r for r in rules if r.kind == "pin" and r.item_id not in gone), key=lambda r: r.position or 0)
    return _pinned(ranked, pins, n, {e["item_id"]: e for e in entries})


def _excluded(rules: list[Rule], entries: Sequence[dict[str, Any]], category_of: Callable[[str], str | None]) -> set:
    deny = [r for r in rules if r.kind == "exclude"]
    if not deny:
        return set()
    return {e["item_id"] for e in entries if any(r.matches(e["item_id"], category_of(e["item_id"])) for r in deny)}


def _rerank(
    ranked: list[dict[str, Any]],
    rules: list[Rule],
    category_of: Callable[[str], str | None],
    tired: frozenset[str],
    rotation_factor: float,
) -> list[dict[str, Any]]:
    if not rules and not tired:
        return ranked
    keyed = []
    for rank, entry in enumerate(ranked):
        factor = 1.0
        category = category_of(entry["item_id"])
        for rule in rules:
            if rule.matches(entry["item_id"], category):
                factor *= rule.rank_factor
        if entry["item_id"] in tired:
            factor *= rotation_factor
        keyed.append(((rank + 1) / factor, rank, entry, factor))
    keyed.sort(key=lambda k: (k[0], k[1]))
    out = []
    for place, (_, rank, entry, factor) in enumerate(keyed):
        out.append({**entry, "reason": "boosted"} if factor > 1 and place < rank else entry)
    return out


def _capped(ranked: list[dict[str, Any]], cap: int, category_of: Callable[[str], str | None]) -> list[dict[str, Any]]:
    """At most ``cap`` items per category, best first (items without a category are not capped)."""
    seen: Counter[str] = Counter()
    out = []
    for entry in ranked:
        category = category_of(entry["item_id"])
        if category is not None:
            if seen[category] >= cap:
                continue
            seen[category] += 1
        out.append(entry)
    return out


def _pinned(
    ranked: list[dict[str, Any]], pins: list[Rule], n: int, known: Mapping[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Pins inserted in ascending position order, so each lands at its own position (or at the end of a shorter
    list)."""
    pinned_ids = {r.item_id for r in pins}
    out = [e for e in ranked if e["item_id"] not in pinned_ids][:n]
    for rule in pins:
        entry = known.get(rule.item_id or "") or {"item_id": rule.item_id, "score": 0.0}
        out.insert(min((rule.position or 1) - 1, len(out)), {**entry, "reason": "pinned"})
    return out[:n]
