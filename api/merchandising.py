"""Merchandising at request time: this process's copy of the rules and live catalogue updates, and the last step of
every list answer (controls applied, metadata added, a reason on every item).

The copy is reloaded only when the generation the reader keeps with its current-version pointer moved
(:mod:`cache.merch`, :mod:`cache.pointer`), so a shop without rules pays nothing per request. The worker that made a
change reloads before it answers the write, so its very next request sees it; every other worker re-reads the
generation on hearing the change announced (milliseconds), or within the pointer TTL should the message be lost.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
from collections.abc import Sequence
from datetime import timedelta, timezone
from typing import Any

from redis.exceptions import RedisError

from cache import merch
from cache.reader import Reader
from recommender.serving.merchandising import Merchandising, Rotation, Rule, arrange
from recommender.serving.policy import utc_now

NO_METADATA = {"title": None, "category": None, "price": None}


class MerchCache:
    """The merchandising state in force, as this process last loaded it."""

    def __init__(self, reader: Reader, rotation: Rotation | None = None) -> None:
        self.reader = reader
        self.rotation = rotation or Rotation()
        self.generation = 0
        self.state = Merchandising()
        self._boundaries: list[float] = []  # starts and ends of the rules' time windows, epoch seconds, sorted
        self._lock = asyncio.Lock()

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
        self._boundaries = sorted(
            when.replace(tzinfo=timezone.utc).timestamp()
            for rule in self.state.rules.values()
            for when in (rule.starts, rule.ends)
            if when is not None
        )
        self.generation = generation

    def valid_until(self, now: float) -> float:
        """When a rule's time window next starts or ends after ``now`` (epoch seconds; inf when none will)."""
        k = bisect.bisect_right(self._boundaries, now)
        return self._boundaries[k] if k < len(self._boundaries) else math.inf

    @property
    def idle(self) -> bool:
        """True when nothing is configured: answers need no re-ranking."""
        return not self.state.rules and not self.state.items


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
    entries: list[dict[str, Any]],
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
        chosen = entries[:n]
        meta = await cache.reader.item_metadata(version, [e["item_id"] for e in chosen])
        return [{**e, **(meta[e["item_id"]] or NO_METADATA)} for e in chosen]
    pins = [r.item_id for r in state.active(kind, now) if r.kind == "pin" and r.item_id]
    stored = await cache.reader.item_metadata(version, [e["item_id"] for e in entries] + pins)
    meta = {i: state.metadata(i, m) for i, m in stored.items()}
    chosen = arrange(
        kind,
        entries,
        n,
        lambda i: (meta.get(i) or NO_METADATA)["category"],
        state,
        now,
        diversity,
        tired,
        cache.rotation.factor,
    )
    return [{**e, **(meta.get(e["item_id"]) or NO_METADATA)} for e in chosen]


def new_item_entries(state: Merchandising, days: int) -> list[dict[str, Any]]:
    """Items the live catalogue added within the new-arrival window, newest first, as new arrivals."""
    return [
        {"item_id": i, "score": 0.0, "reason": "new_arrival"} for i in state.new_items(utc_now() - timedelta(days=days))
    ]
