"""Merchandising at request time: this process's copy of the rules and live catalogue updates, and the last step of
every list answer (controls applied, metadata added, a reason on every item).

The copy is reloaded only when the generation the reader keeps with its current-version pointer moved
(:mod:`cache.merch`, :mod:`cache.pointer`), so a shop without rules pays nothing per request. The worker that made a
change reloads before it answers the write, so its very next request sees it; every other worker re-reads the
generation on hearing the change announced (milliseconds), or within the pointer TTL should the message be lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, overload

from redis.exceptions import RedisError

from cache import merch
from cache.reader import Reader
from recommender.serving.merchandising import LIST_KINDS, Merchandising, Rotation, Rule, choose, entry_of
from recommender.serving.policy import utc_now
from recommender.serving.rule_book import ListRules

NO_METADATA = {"title": None, "category": None, "price": None}


class MerchCache:
    """The merchandising state in force, as this process last loaded it, and the categories of the items the rules
    asked about (the published version's, read once per item)."""

    def __init__(self, reader: Reader, rotation: Rotation | None = None) -> None:
        self.reader = reader
        self.rotation = rotation or Rotation()
        self.generation = 0
        self.state = Merchandising()
        self._lock = asyncio.Lock()
        self._categories: tuple[str, dict[str, str | None]] = ("", {})
        self._effects: dict[int, tuple[str, ListRules, dict[str, float | None]]] = {}

    async def current(self) -> Merchandising:
        """The state for the generation the reader's pointer saw (reloaded once when it moved)."""
        if self.reader.merch_generation != self.generation:
            async with self._lock:
                if self.reader.merch_generation != self.generation:
                    await self.reload()
        return self.state

    async def refresh(self) -> None:
        """After this worker changed the rules or the catalogue: read the generation and load the state now, so its
        very next request sees the change (other workers hear it announced). Should Redis fail here, the pointer is
        expired already and the next request reads it."""
        with contextlib.suppress(RedisError):
            await self.reader.pointer.refresh()
            await self.current()

    async def reload(self) -> None:
        generation, rules, items = await merch.load(self.reader.client, self.reader.keys)
        self.state = Merchandising({name: Rule.model_validate(r) for name, r in rules.items()}, items)
        self.generation = generation

    def valid_until(self, now: float) -> float:
        """When a rule's time window next starts or ends after ``now`` (epoch seconds; inf when none will)."""
        return self.state.book.next_change(now)

    @property
    def idle(self) -> bool:
        """True when nothing is configured: answers need no re-ranking."""
        return not self.state.rules and not self.state.items

    async def effect_of(self, version: str, rules: ListRules, item_ids: list[str]) -> Callable[[str], float | None]:
        """A lookup of :meth:`ListRules.effect` under ``rules`` for items of ``version`` that knows every one of
        ``item_ids``: worked out once per item (reading categories when the rules need them) and kept until the
        rules or the version change, so a request costs one dict lookup per candidate."""
        cached_version, cached_rules, effects = self._effects.get(id(rules), ("", None, {}))
        if cached_rules is not rules or cached_version != version:
            if len(self._effects) >= len(LIST_KINDS):  # rules recompiled or a new version: start again
                self._effects.clear()
            effects = {}
            self._effects[id(rules)] = (version, rules, effects)
        missing = [i for i in item_ids if i not in effects]
        if missing:
            category_of = await self.category_of(version, missing) if rules.by_category else _no_category
            effects.update({i: rules.effect(i, category_of(i)) for i in missing})
        return effects.get

    async def category_of(self, version: str, item_ids: list[str]) -> Callable[[str], str | None]:
        """A lookup of items' categories (a live update's over the published one) that knows every one of
        ``item_ids``; a plain dict lookup unless the live catalogue changed categories."""
        cached_version, known = self._categories
        if cached_version != version:  # one version kept: they change nightly
            known = {}
            self._categories = (version, known)
        missing = [i for i in item_ids if i not in known]
        if missing:
            stored = await self.reader.item_metadata(version, missing)
            known.update({i: (m or NO_METADATA)["category"] for i, m in stored.items()})
        live = self.state.live_categories
        if not live:
            return known.get
        return lambda i: live.get(i) or known.get(i)


class ReasonedPairs(Sequence[dict[str, Any]]):
    """Ranked [item, score] pairs read as list entries with a reason, each entry built when read: an answer shows a
    few of its candidates (a hundred when rules apply), and building them all cost more than applying the rules."""

    def __init__(self, pairs: Sequence[Sequence[Any]], reason: Callable[[int, str], str]) -> None:
        self.pairs = pairs
        self.ids = [p[0] for p in pairs]
        self._reason = reason

    def __len__(self) -> int:
        return len(self.pairs)

    @overload
    def __getitem__(self, k: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, k: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, k: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self.pairs)))]
        item_id, score = self.pairs[k][:2]
        return {"item_id": item_id, "score": score, "reason": self._reason(k, item_id)}


def as_entries(ranked: Sequence[Any], reason: str) -> list[dict[str, Any]]:
    """Stored list entries ([item, score] pairs or next-purchase dicts) as dicts with a reason (their own, if any)."""
    return [
        {"item_id": r[0], "score": r[1], "reason": reason}
        if isinstance(r, list | tuple)
        else {**r, "reason": r.get("reason") or reason}
        for r in ranked
    ]


async def present(
    cache: MerchCache,
    version: str,
    kind: str,
    entries: Sequence[dict[str, Any]],
    n: int,
    diversity: int | None = None,
    live_events: Sequence[tuple[str, str, Any]] = (),
) -> list[dict[str, Any]]:
    """The first ``n`` of ``entries`` (dicts with a reason, best first) as answered: merchandising controls applied,
    title, category and price added (live catalogue updates over the published metadata)."""
    state = await cache.current()
    now = utc_now()
    tired = cache.rotation.tired(live_events, now) if live_events else frozenset()
    if cache.idle and diversity is None and not tired:
        chosen = list(entries[:n])
        meta = await cache.reader.item_metadata(version, [e["item_id"] for e in chosen])
        return [{**e, **(meta[e["item_id"]] or NO_METADATA)} for e in chosen]
    ids = entries.ids if isinstance(entries, ReasonedPairs) else [e["item_id"] for e in entries]
    rules = state.rules_for(kind, now)
    effect_of = await cache.effect_of(version, rules, ids + [item for item, _ in rules.pins])
    category_of = await cache.category_of(version, ids) if diversity is not None else None
    slots = choose(rules, ids, n, effect_of, diversity, category_of, tired, cache.rotation.factor)
    meta = await cache.reader.item_metadata(version, [item for _, item, _ in slots])
    out = []
    for slot in slots:
        item_meta = state.metadata(slot[1], meta[slot[1]]) if slot[1] in state.items else meta[slot[1]]
        out.append({**entry_of(slot, entries.__getitem__), **(item_meta or NO_METADATA)})
    return out


def _no_category(item_id: str) -> None:
    return None


def new_item_entries(state: Merchandising, days: int) -> list[dict[str, Any]]:
    """Items the live catalogue added within the new-arrival window, newest first, as new arrivals."""
    return [
        {"item_id": i, "score": 0.0, "reason": "new_arrival"} for i in state.new_items(utc_now() - timedelta(days=days))
    ]
