"""Merchandising rules compiled into lookups, so a request costs a few dict lookups per candidate whatever the
number of rules.

:class:`RuleBook` holds a shop's rules; :meth:`RuleBook.for_list` gives the :class:`ListRules` in force for one list
kind at one time: the exclusion sets, the boost / bury multipliers by item and by category, and the pins in slot
order. They are compiled once per list kind and per span between two window boundaries (a rule's ``starts`` or
``ends``): inside a span the same rules apply, so the compiled form is kept until the clock leaves the span.

:meth:`ListRules.effect` is all a list needs to know of an item; the API keeps it per item and version, so a request
with rules costs one dict lookup per candidate. The semantics are those of
:class:`recommender.serving.merchandising.Rule`: a rule matches an item when the item is
among its ``item_ids`` or in its ``category`` (once, even when both hold); the factors of every matching boost and
bury multiply.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the rule model imports nothing from here; only its attributes are read
    from recommender.serving.merchandising import Rule


@dataclasses.dataclass(frozen=True)
class ListRules:
    """The rules in force for one list kind during one span of time, as lookups."""

    hidden: frozenset[str] = frozenset()
    """Items an exclude rule names, and items the live catalogue marks unavailable: they leave every list."""
    hidden_categories: frozenset[str] = frozenset()
    item_factors: Mapping[str, float] = dataclasses.field(default_factory=dict)
    """Product of the factors of the boosts and buries naming the item (rules without a category)."""
    category_factors: Mapping[str, float] = dataclasses.field(default_factory=dict)
    """Product of the factors of the boosts and buries of each category."""
    named_in_category_rules: Mapping[str, tuple[tuple[float, str], ...]] = dataclasses.field(default_factory=dict)
    """(factor, category) of each boost or bury naming the item and also a category: applied unless the item is in
    that category (then its category factor already holds it)."""
    pins: tuple[tuple[str, int], ...] = ()
    """(item id, position) in ascending position (rules of equal position in rule order)."""

    @property
    def by_category(self) -> bool:
        """True when an item's category matters (to hide it or to move it)."""
        return bool(self.hidden_categories or self.category_factors or self.named_in_category_rules)

    @property
    def reranks(self) -> bool:
        return bool(self.item_factors or self.category_factors or self.named_in_category_rules)

    def effect(self, item_id: str, category: str | None) -> float | None:
        """None when the item leaves the list (excluded or unavailable), else its rank factor: every matching boost
        and bury multiplied (1.0 when none matches)."""
        if item_id in self.hidden or (category is not None and category in self.hidden_categories):
            return None
        factor = self.item_factors.get(item_id, 1.0)
        if category is not None:
            factor *= self.category_factors.get(category, 1.0)
        for rule_factor, rule_category in self.named_in_category_rules.get(item_id, ()):
            if rule_category != category:
                factor *= rule_factor
        return factor


def compile_rules(rules: Iterable[Rule], unavailable: Iterable[str] = ()) -> ListRules:
    """The lookups of ``rules`` (all of them: the caller picks the rules in force), hiding ``unavailable`` too."""
    hidden: set[str] = set(unavailable)
    hidden_categories: set[str] = set()
    item_factors: dict[str, float] = {}
    category_factors: dict[str, float] = {}
    named: dict[str, list[tuple[float, str]]] = {}
    pins: list[tuple[str, int]] = []
    for rule in rules:
        if rule.kind == "pin":
            pins.append((rule.item_id or "", rule.position or 1))
        elif rule.kind == "exclude":
            hidden.update(rule.item_ids or ())
            if rule.category is not None:
                hidden_categories.add(rule.category)
        else:
            factor = rule.rank_factor
            if rule.category is not None:
                category_factors[rule.category] = category_factors.get(rule.category, 1.0) * factor
            for item in dict.fromkeys(rule.item_ids or ()):  # an item listed twice still matches once
                if rule.category is None:
                    item_factors[item] = item_factors.get(item, 1.0) * factor
                else:
                    named.setdefault(item, []).append((factor, rule.category))
    pins.sort(key=lambda p: p[1])
    return ListRules(
        frozenset(hidden),
        frozenset(hidden_categories),
        item_factors,
        category_factors,
        {item: tuple(found) for item, found in named.items()},
        tuple(pins),
    )


class RuleBook:
    """A shop's rules (and unavailable items) with their compiled form per list kind, recompiled when the clock
    crosses a window boundary."""

    def __init__(self, rules: Iterable[Rule], unavailable: Iterable[str] = ()) -> None:
        self.rules = tuple(rules)
        self.unavailable = frozenset(unavailable)
        self._boundaries = sorted({t for r in self.rules for t in (r.starts, r.ends) if t is not None})
        self._epochs = [t.replace(tzinfo=timezone.utc).timestamp() for t in self._boundaries]
        self._span: tuple[datetime | None, datetime | None] | None = None
        self._compiled: dict[str, ListRules] = {}

    def for_list(self, kind: str, now: datetime) -> ListRules:
        """The rules in force for list ``kind`` at ``now`` (naive UTC), compiled."""
        if not self._in_span(now):
            self._span = self._span_of(now)
            self._compiled = {}
        found = self._compiled.get(kind)
        if found is None:
            found = self._compiled[kind] = compile_rules(
                (r for r in self.rules if r.applies(kind, now)), self.unavailable
            )
        return found

    def next_change(self, now: float) -> float:
        """When a rule's time window next starts or ends after ``now`` (epoch seconds; inf when none will)."""
        k = bisect.bisect_right(self._epochs, now)
        return self._epochs[k] if k < len(self._epochs) else math.inf

    def _in_span(self, now: datetime) -> bool:
        if self._span is None:
            return False
        start, end = self._span
        return (start is None or start <= now) and (end is None or now < end)

    def _span_of(self, now: datetime) -> tuple[datetime | None, datetime | None]:
        """The boundaries around ``now``: every rule's window holds or not alike from ``start`` until before ``end``
        (a rule applies from its ``starts`` on and no longer at its ``ends``)."""
        k = bisect.bisect_right(self._boundaries, now)
        return (
            self._boundaries[k - 1] if k > 0 else None,
            self._boundaries[k] if k < len(self._boundaries) else None,
        )
