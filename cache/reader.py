"""Reading the published version for the API: a pinned version per request, a near cache, live events on demand.

A request asks its worker's :class:`~cache.pointer.Pointer` for the version to serve and reads every key under that
one version id, so an answer never mixes versions. Values come from the :class:`~cache.near.NearCache` when it has
them and otherwise from Redis in one call (one MGET, or a pipeline when live events come along; on a cluster a
customer's keys and their live events share a slot, so that is one node). A visitor's live events are read only when
the :class:`~cache.live_index.LiveIndex` says they may have some.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson

from cache import codec
from cache.keys import Keys
from cache.live_index import LiveIndex
from cache.near import MISS, NearCache
from cache.notifications import Notifications
from cache.pointer import Pointer
from cache.server import is_cluster, mget


def decode(value: bytes | None) -> Any:
    """A stored JSON value, or None for a missing key (compact lists need :meth:`Reader.decode` and the catalogue)."""
    return orjson.loads(value) if value is not None else None


def decode_with(value: bytes | None, catalogue: list[str] | None) -> Any:
    """A stored value, compact (:mod:`cache.codec`, item positions in ``catalogue``) or JSON; None for a missing key;
    customer model rows stay bytes."""
    if value is None:
        return None
    if codec.is_customer(value):  # a customer model row: the API computes lists from it (api.session_models)
        return value
    if codec.is_compact(value):
        if catalogue is None:
            raise ValueError("a compact list needs its version's catalogue")
        return codec.decode(value, catalogue)
    return orjson.loads(value)


class Reader:
    """Async reads for the API. ``pointer_ttl`` in seconds; ``near_cache_mb`` 0 turns the near cache off. Item
    metadata is cached in-process per version (it never changes within one)."""

    def __init__(
        self,
        client: Any,
        keys: Keys,
        pointer_ttl: float = 1.0,
        near_cache_mb: float = 0.0,
        meta_cache_versions: int = 2,
    ) -> None:
        self.client = client
        self.keys = keys
        self.cluster = is_cluster(client)
        self.near = NearCache(near_cache_mb)
        self.live = LiveIndex()
        self.pointer = Pointer(
            client, keys.current, pointer_ttl, on_change=self._version_changed, generation_key=keys.merch_gen
        )
        self.notifications = Notifications(client, keys, self.pointer, self.live)
        self._meta: dict[str, dict[str, dict[str, Any] | None]] = {}
        self._meta_versions = meta_cache_versions
        self._catalogues: dict[str, list[str]] = {}
        self._background: set[asyncio.Task] = set()

    def start(self) -> None:
        """Listen to the publisher's announcements (call from a running event loop)."""
        self.notifications.start()

    async def stop(self) -> None:
        await self.notifications.stop()
        for task in list(self._background):
            task.cancel()

    def _version_changed(self, _version: str | None) -> None:
        # The job trims the live index after a publish: take the trimmed copy (announcements keep coming meanwhile).
        if self.notifications.subscribed.is_set():
            task = asyncio.get_running_loop().create_task(self.notifications.resync())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    @property
    def merch_generation(self) -> int:
        """The merchandising generation (:mod:`cache.merch`) read with the pointer, so a change counts within the
        pointer TTL on every worker, at once on those that hear its announcement."""
        return self.pointer.generation

    async def version(self) -> str | None:
        """The version this request serves (None when nothing is published)."""
        return await self.pointer.get()

    async def values(self, version: str, *suffixes: str) -> list[Any]:
        """Decoded values (None for a missing key) of ``suffixes`` under ``version``."""
        values, _ = await self.values_and_live(version, None, *suffixes)
        return values

    async def values_and_live(
        self, version: str, live_user: str | None, *suffixes: str
    ) -> tuple[list[Any], list[bytes]]:
        """Decoded values of ``suffixes`` under ``version`` and, when ``live_user`` may have live events, their live
        list (newest first), with at most one call to Redis."""
        out: list[Any] = [self.near.get(version, s) for s in suffixes]
        missing = [i for i, v in enumerate(out) if v is MISS]
        live_key = self.keys.live_user(live_user) if live_user and self.live.maybe_live(live_user) else None
        if not missing and live_key is None:
            return out, []
        names = [self.keys.key(version, suffixes[i]) for i in missing]
        raw, live = await self._read(names, live_key)
        for i, value in zip(missing, raw):
            decoded = out[i] = await self.decode(version, value)
            self.near.put(version, suffixes[i], decoded)
        return out, live

    async def _read(self, names: list[str], live_key: str | None) -> tuple[list[bytes | None], list[bytes]]:
        if live_key is None:
            if len(names) == 1:
                return [await self.client.get(names[0])], []
            return (await mget(self.client, names)), []
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.get(name)
        pipe.lrange(live_key, 0, -1)
        replies = await pipe.execute()
        return replies[:-1], replies[-1] or []

    async def fetch(self, *suffixes: str) -> tuple[str | None, list[Any]]:
        """Return (current version, decoded values or None per suffix); version None when nothing is published."""
        version = await self.version()
        if version is None:
            return None, [None] * len(suffixes)
        return version, await self.values(version, *suffixes)

    async def catalogue(self, version: str) -> list[str]:
        """The version's item ids in catalogue order (loaded once per version, kept for the last two)."""
        found = self._catalogues.get(version)
        if found is None:
            raw = await self.raw(version, Keys.CATALOGUE)
            found = orjson.loads(raw) if raw else []
            while len(self._catalogues) >= self._meta_versions:
                self._catalogues.pop(next(iter(self._catalogues)))
            self._catalogues[version] = found
        return found

    async def decode(self, version: str, value: bytes | None) -> Any:
        """A stored value of ``version`` decoded (compact lists through the version's catalogue); None when missing."""
        if value is None:
            return None
        return decode_with(value, await self.catalogue(version) if codec.is_compact(value) else None)

    async def live_events(self, user_id: str) -> list[bytes]:
        """A visitor's live list (newest first), read from Redis whatever the live index says."""
        return await self.client.lrange(self.keys.live_user(user_id), 0, -1) or []

    async def raw(self, version: str, suffix: str) -> bytes | None:
        """One key of a version as stored (for binary values such as item factors)."""
        return await self.client.get(self.keys.key(version, suffix))

    async def item_metadata(self, version: str, item_ids: list[str]) -> dict[str, dict[str, Any] | None]:
        """Title, category and price of items (None for items without metadata); the dicts are shared, do not change
        them."""
        cache = self._meta.get(version)
        if cache is None:
            while len(self._meta) >= self._meta_versions:
                self._meta.pop(next(iter(self._meta)))
            cache = self._meta[version] = {}
        missing = [i for i in item_ids if i not in cache]
        if missing:
            raw = await self.client.hmget(self.keys.key(version, Keys.ITEMS), missing)
            for item_id, value in zip(missing, raw):
                cache[item_id] = orjson.loads(value) if value is not None else None
        return {i: cache[i] for i in item_ids}

    async def ping(self) -> bool:
        return bool(await self.client.ping())


def read_value(client: Any, keys: Keys, version: str, suffix: str) -> Any:
    """One stored value of a version, decoded (sync; compact lists through the version's catalogue)."""
    raw = client.get(keys.key(version, suffix))
    if raw is None or not codec.is_compact(raw):
        return decode(raw)
    catalogue = client.get(keys.key(version, Keys.CATALOGUE))
    return decode_with(raw, orjson.loads(catalogue) if catalogue else None)


def iter_lists(client: Any, keys: Keys, version: str, kind: str, batch: int = 1000) -> Iterator[tuple[str, Any]]:
    """Every ``kind`` list ("next", "user", "sim", ...) of one version as (id, decoded list), batch by batch (sync)."""
    raw_catalogue = client.get(keys.key(version, Keys.CATALOGUE))
    catalogue = orjson.loads(raw_catalogue) if raw_catalogue else None
    for values in scan_values(client, keys.version_prefix(version) + f"{kind}:", batch):
        for key, raw in values:
            yield key, decode_with(raw, catalogue)


def scan_values(client: Any, prefix: str, batch: int = 1000) -> Iterator[list[tuple[str, bytes]]]:
    """Every key under ``prefix`` with its stored value, one ``MGET`` per ``batch`` keys (sync): lists of (key
    without the prefix, raw value); keys deleted meanwhile are left out."""
    names: list[bytes] = []

    def flush() -> list[tuple[str, bytes]]:
        found = [
            (Keys.id_of(name.decode()[len(prefix) :]), raw)
            for name, raw in zip(names, mget(client, names))
            if raw is not None
        ]
        names.clear()
        return found

    for name in client.scan_iter(match=prefix + "*", count=batch):
        names.append(name)
        if len(names) >= batch:
            yield flush()
    if names:
        yield flush()
