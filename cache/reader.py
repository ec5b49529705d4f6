"""Reading the current version: one round trip resolves the pointer and fetches the keys under it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from cache import codec
from cache.keys import Keys

# Resolve `current` and read every requested key of that version inside one script: atomic, so the values always
# belong to one version, and one network round trip per request.
# KEYS[2] is the merchandising generation (cache.merch), returned third, so rule and catalogue changes count from
# the very next request. KEYS[3], when given, is a visitor's live-event list (not versioned), returned second.
_FETCH = """
local v = redis.call('GET', KEYS[1])
if not v then return {false} end
local live = false
if KEYS[3] then live = redis.call('LRANGE', KEYS[3], 0, -1) end
local base = ARGV[1] .. v .. ':'
local out = {v, live, redis.call('GET', KEYS[2])}
for i = 2, #ARGV do out[i + 2] = redis.call('GET', base .. ARGV[i]) end
return out
"""


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
    """Async reads for the API; item metadata is cached in-process per version (it never changes within one)."""

    def __init__(self, client: aioredis.Redis, keys: Keys, meta_cache_versions: int = 2) -> None:
        self.client = client
        self.keys = keys
        self._fetch_sha = hashlib.sha1(_FETCH.encode()).hexdigest()
        self._meta: dict[str, dict[str, dict[str, Any] | None]] = {}
        self._meta_versions = meta_cache_versions
        self._catalogues: dict[str, list[str]] = {}
        self.merch_generation = 0
        """The merchandising generation (:mod:`cache.merch`) seen by the latest fetch."""

    async def fetch(self, *suffixes: str) -> tuple[str | None, list[Any]]:
        """Return (current version, decoded values or None per suffix); version None when nothing is published."""
        version, values, _ = await self.fetch_raw(None, *suffixes)
        if version is None:
            return None, [None] * len(suffixes)
        return version, [await self.decode(version, v) for v in values]

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

    async def fetch_raw(
        self, live_user: str | None, *suffixes: str
    ) -> tuple[str | None, list[bytes | None], list[bytes]]:
        """Like :meth:`fetch` with the values as stored (JSON bytes, decoded only by callers that need them), plus the
        live-event list of ``live_user`` (newest first), in the same round trip."""
        keys = [self.keys.current, self.keys.merch_gen] + ([self.keys.live_user(live_user)] if live_user else [])
        reply = await self._run_fetch(keys, [self.keys.prefix + ":v:", *suffixes])
        if not reply or reply[0] is None:
            return None, [None] * len(suffixes), []
        self.merch_generation = int(reply[2] or 0)
        values = list(reply[3:]) + [None] * (len(suffixes) - len(reply) + 3)
        return reply[0].decode(), values, reply[1] or []

    async def _run_fetch(self, keys: list[str], args: list[str]) -> Any:
        # EVALSHA through execute_command: redis-py's Script wrapper costs about a fifth of the call on this hot path.
        try:
            return await self.client.execute_command("EVALSHA", self._fetch_sha, len(keys), *keys, *args)
        except NoScriptError:  # first call on this server, or its script cache was flushed / it restarted
            await self.client.script_load(_FETCH)
            return await self.client.execute_command("EVALSHA", self._fetch_sha, len(keys), *keys, *args)

    async def raw(self, version: str, suffix: str) -> bytes | None:
        """One key of a version as stored (for binary values such as item factors)."""
        return await self.client.get(self.keys.version_prefix(version) + suffix)

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
            raw = await self.client.hmget(self.keys.version_prefix(version) + Keys.ITEMS, missing)
            for item_id, value in zip(missing, raw):
                cache[item_id] = orjson.loads(value) if value is not None else None
        return {i: cache[i] for i in item_ids}

    async def ping(self) -> bool:
        return bool(await self.client.ping())


def read_value(client: Any, keys: Keys, version: str, suffix: str) -> Any:
    """One stored value of a version, decoded (sync; compact lists through the version's catalogue)."""
    raw = client.get(keys.version_prefix(version) + suffix)
    if raw is None or not codec.is_compact(raw):
        return decode(raw)
    catalogue = client.get(keys.version_prefix(version) + Keys.CATALOGUE)
    return decode_with(raw, orjson.loads(catalogue) if catalogue else None)


def iter_lists(client: Any, keys: Keys, version: str, kind: str, batch: int = 1000) -> Iterator[tuple[str, Any]]:
    """Every ``kind`` list ("next", "user", "sim", ...) of one version as (id, decoded list), batch by batch (sync)."""
    raw_catalogue = client.get(keys.version_prefix(version) + Keys.CATALOGUE)
    catalogue = orjson.loads(raw_catalogue) if raw_catalogue else None
    for values in scan_values(client, keys.version_prefix(version) + f"{kind}:", batch):
        for key, raw in values:
            yield key, decode_with(raw, catalogue)


def scan_values(client: Any, prefix: str, batch: int = 1000) -> Iterator[list[tuple[str, bytes]]]:
    """Every key under ``prefix`` with its stored value, one ``MGET`` per ``batch`` keys (sync): lists of (key
    without the prefix, raw value); keys deleted meanwhile are left out."""
    names: list[bytes] = []

    def flush() -> list[tuple[str, bytes]]:
        found = [(name.decode()[len(prefix) :], raw) for name, raw in zip(names, client.mget(names)) if raw is not None]
        names.clear()
        return found

    for name in client.scan_iter(match=prefix + "*", count=batch):
        names.append(name)
        if len(names) >= batch:
            yield flush()
    if names:
        yield flush()
