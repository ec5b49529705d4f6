"""Merchandising controls applied to every list answer at request time: the live catalogue (availability and
metadata updates between nightly runs), boost / bury / pin / exclude rules, a per-category diversity cap, rotation
of items a visitor keeps seeing without clicking, and a reason on every slot.

Pure functions over plain data: the API loads the rules and catalogue updates from Redis (:mod:`cache.merch`) and
calls :func:`choose` on every list it answers (with each item's effect under the compiled rules kept per version,
:mod:`recommender.serving.rule_book`); :func:`arrange` is the same on list entries.

How rules move items: a list's order is the model's ranking. A boost of ``f`` divides an item's rank by ``f`` (a
boost of 2 moves the 10th item up to about the 5th place), a bury multiplies it (a bury of 0.5 moves the 5th item
down to about the 10th); items with equal ranks after that keep the model's order. Ranking by rank rather than by
score keeps lists whose scores are not comparable (personal picks topped up with bestsellers) in a sensible order.
Excluded and unavailable items leave every list; a pinned item takes its position (counted from 1) whether or not
the model ranked it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from recommender.data.loading import ID_PATTERN
from recommender.data.schema import MAX_ID_LENGTH, MAX_PRICE
from recommender.serving.rule_book import ListRules, RuleBook

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

    @functools.cached_property
    def unavailable(self) -> frozenset[str]:
        return frozenset(i for i, u in self.items.items() if u.get("available") is False)

    @functools.cached_property
    def book(self) -> RuleBook:
        """The rules compiled per list kind (kept with this state, so compiled once per load)."""
        return RuleBook(self.rules.values(), self.unavailable)

    def rules_for(self, kind: str, now: datetime) -> ListRules:
        """The rules in force for list ``kind`` at ``now``, compiled into lookups."""
        return self.book.for_list(kind, now)

    @functools.cached_property
    def live_categories(self) -> dict[str, str]:
        """Categories the live catalogue set, by item."""
        return {i: u["category"] for i, u in self.items.items() if u.get("category") is not None}

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


Slot = tuple[int, str, str | None]
"""One item of an arranged list: its position among the candidates (-1 for a pinned item that is not one), its id,
and the reason that replaces the candidate's own (None: it keeps its own)."""


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
    """The first ``n`` entries of a list answer after the merchandising controls (:func:`choose`) in force for list
    ``kind`` at ``now``.

    ``entries`` are dicts with at least ``item_id``, ``score`` and ``reason``, best first; boosted items that moved
    up say ``boosted``, pinned ones ``pinned``."""
    rules = merch.rules_for(kind, now)
    ids = [e["item_id"] for e in entries]
    slots = choose(
        rules, ids, n, lambda i: rules.effect(i, category_of(i)), diversity, category_of, tired, rotation_factor
    )
    return [entry_of(slot, entries.__getitem__) for slot in slots]


def entry_of(slot: Slot, entry: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
    """A slot's list entry: the candidate's (``entry(position)``) with the slot's reason, or a pinned item's."""
    k, item_id, reason = slot
    found = entry(k) if k >= 0 else {"item_id": item_id, "score": 0.0}
    return found if reason is None else {**found, "reason": reason}


def choose(
    rules: ListRules,
    ids: list[str],
    n: int,
    effect_of: Callable[[str], float | None],
    diversity: int | None = None,
    category_of: Callable[[str], str | None] | None = None,
    tired: frozenset[str] = frozenset(),
    rotation_factor: float = 0.25,
) -> list[Slot]:
    """The first ``n`` slots of a list answer whose candidates are ``ids`` (best first).

    ``effect_of`` gives an item's :meth:`ListRules.effect` under ``rules``: unavailable and excluded items leave,
    boosts and buries re-rank, and so does rotation (``tired`` items, rank divided by ``rotation_factor``); at most
    ``diversity`` items per category (``category_of``) are kept; pins take their positions last (unless unavailable
    or excluded). One lookup per candidate whatever the number of rules."""
    effects = [effect_of(i) for i in ids]
    kept = [k for k, effect in enumerate(effects) if effect is not None]
    pins = [pin for pin in rules.pins if effect_of(pin[0]) is not None]
    enough = len(kept) if diversity is not None else n + len(pins)  # the most slots the cut and the pins take
    if rules.reranks or tired:
        if tired:
            effects = [e * rotation_factor if e is not None and i in tired else e for i, e in zip(ids, effects)]
        slots = _reranked(ids, effects, kept, enough)  # type: ignore[arg-type]  # kept: positions not None
    else:
        slots = [(k, ids[k], None) for k in kept[:enough]]
    if diversity is not None and category_of is not None:
        slots = _capped(slots, diversity, category_of)
    return _pinned(slots, pins, n, ids)


def _reranked(ids: list[str], factors: list[float], kept: list[int], enough: int) -> list[Slot]:
    """The first ``enough`` of the ``kept`` positions by rank among them divided by their factor (ties in model
    order), each saying ``boosted`` when it moved up by a factor above 1."""
    keys = [rank / factors[k] for rank, k in enumerate(kept, 1)]
    order = sorted(range(len(kept)), key=keys.__getitem__)[:enough]
    return [
        (kept[p], ids[kept[p]], "boosted" if place < p and factors[kept[p]] > 1 else None)
        for place, p in enumerate(order)
    ]


def _capped(slots: list[Slot], cap: int, category_of: Callable[[str], str | None]) -> list[Slot]:
    """At most ``cap`` items per category, best first (items without a category are not capped)."""
    seen: Counter[str] = Counter()
    out = []
    for slot in slots:
        category = category_of(slot[1])
        if category is not None:
            if seen[category] >= cap:
                continue
            seen[category] += 1
        out.append(slot)
    return out


def _pinned(slots: list[Slot], pins: list[tuple[str, int]], n: int, ids: list[str]) -> list[Slot]:
    """Pins ((item id, position), ascending position) inserted in order, so each lands at its own position (or at
    the end of a shorter list); a pinned candidate keeps its entry."""
    if not pins:
        return slots[:n]
    pinned_ids = {item for item, _ in pins}
    out = [s for s in slots if s[1] not in pinned_ids][:n]
    listed = pinned_ids.intersection(ids)
    for item, position in pins:
        out.insert(min(position - 1, len(out)), (ids.index(item) if item in listed else -1, item, "pinned"))
    return out[:n]
