"""Versioned publishing: write a whole new version, then switch the pointer in one atomic step.

A run writes every key under a fresh version id, then a Lua script sets ``previous = current`` and
``current = new`` atomically, so a reader (which resolves the pointer and its keys in one script, see
:mod:`cache.reader`) never sees a mix of two versions. The previous version stays for rollback; every other
version, including one left half-written by a killed run, is deleted by the next publish or by ``cleanup()``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime, timezone
from itertools import islice
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis

from cache.keys import Keys

_SWITCH = """
local new = ARGV[1]
if redis.call('EXISTS', KEYS[3] .. new .. ':manifest') == 0 then return redis.error_reply('version has no manifest') end
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= new then redis.call('SET', KEYS[2], cur) end
redis.call('SET', KEYS[1], new)
return cur
"""

# Swaps current and previous atomically; returns the version now serving, or nil when there is no previous one.
ROLLBACK_SCRIPT = """
local cur = redis.call('GET', KEYS[1])
local prev = redis.call('GET', KEYS[2])
if not prev then return false end
redis.call('SET', KEYS[1], prev)
if cur then redis.call('SET', KEYS[2], cur) end
return prev
"""


class NoPreviousVersion(RuntimeError):
    """A rollback was asked for, but no previous version is kept."""

    def __init__(self) -> None:
        super().__init__("there is no previous version to roll back to")


def dumps(value: Any) -> bytes:
    """A value as stored: bytes as they are (already encoded, e.g. by :mod:`cache.codec`), anything else as JSON."""
    if isinstance(value, bytes):
        return value
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


class Publisher:
    """Writes one new version; nothing is visible to readers until :meth:`commit`."""

    def __init__(self, client: redis.Redis, keys: Keys, batch_size: int = 5_000) -> None:
        self.client = client
        self.keys = keys
        self.batch_size = batch_size
        self.version = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
        self._base = keys.version_prefix(self.version)
        self._pipe = client.pipeline(transaction=False)
        self._pending = 0
        self.written = 0
        client.sadd(keys.versions, self.version)

    def put(self, suffix: str, value: Any) -> None:
        """Queue one key of this version (value JSON-encoded unless it is bytes)."""
        self._pipe.set(self._base + suffix, dumps(value))
        self._count()

    def put_raw(self, suffix: str, value: bytes) -> None:
        """Queue one key of this version holding raw bytes."""
        self._pipe.set(self._base + suffix, value)
        self._count()

    def put_many(self, pairs: Iterable[tuple[str, Any]]) -> int:
        """Queue many keys (JSON-encoded unless bytes) as MSET commands of up to ``batch_size`` keys; returns how many."""
        n = 0
        it = iter(pairs)
        while chunk := list(islice(it, self.batch_size)):
            self._pipe.mset({self._base + suffix: dumps(value) for suffix, value in chunk})
            n += len(chunk)
            self._count(len(chunk))
        return n

    def put_items(self, metadata: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Item metadata as one hash field per item."""
        key = self._base + Keys.ITEMS
        for item_id, meta in metadata:
            self._pipe.hset(key, item_id, dumps(meta))
            self._count()

    def _count(self, keys: int = 1) -> None:
        self._pending += keys
        self.written += keys
        if self._pending >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._pipe.execute()
            self._pending = 0

    def commit(self, manifest: dict[str, Any]) -> str | None:
        """Write the manifest, switch ``current`` to this version atomically, drop older versions; return the replaced one."""
        self.put(Keys.MANIFEST, {**manifest, "version": self.version})
        self.flush()
        replaced = self.client.eval(
            _SWITCH, 3, self.keys.current, self.keys.previous, self.keys.prefix + ":v:", self.version
        )
        cleanup(self.client, self.keys)
        return replaced.decode() if replaced else None

    def abort(self) -> None:
        """Forget this version (its keys are removed)."""
        self._pipe.reset()
        delete_version(self.client, self.keys, self.version)


def delete_version(client: redis.Redis, keys: Keys, version: str) -> int:
    """Remove every key of one version."""
    removed = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=keys.version_prefix(version) + "*", count=10_000):
        batch.append(key)
        if len(batch) >= 10_000:
            removed += client.unlink(*batch)
            batch.clear()
    if batch:
        removed += client.unlink(*batch)
    client.srem(keys.versions, version)
    return removed


def cleanup(client: redis.Redis, keys: Keys) -> list[str]:
    """Delete every version but the current and the previous one (also half-written ones of killed runs)."""
    keep = {v.decode() for v in client.mget(keys.current, keys.previous) if v}
    gone = [v.decode() for v in client.smembers(keys.versions) if v.decode() not in keep]
    for version in gone:
        delete_version(client, keys, version)
    return sorted(gone)


def _rolled_back(reply: bytes | None) -> str:
    if reply is None:
        raise NoPreviousVersion()
    return reply.decode()


def rollback(client: redis.Redis, keys: Keys) -> str:
    """Serve the previous version again (the current one becomes 'previous', so a second rollback undoes it); raises
    :class:`NoPreviousVersion` when there is none."""
    return _rolled_back(client.eval(ROLLBACK_SCRIPT, 2, keys.current, keys.previous))


async def rollback_async(client: aioredis.Redis, keys: Keys) -> str:
    """:func:`rollback` on an asyncio client (the API's)."""
    return _rolled_back(await client.eval(ROLLBACK_SCRIPT, 2, keys.current, keys.previous))


def current_version(client: redis.Redis, keys: Keys) -> tuple[str | None, str | None]:
    cur, prev = client.mget(keys.current, keys.previous)
    return (cur.decode() if cur else None, prev.decode() if prev else None)


def manifest(client: redis.Redis, keys: Keys, version: str) -> dict[str, Any] | None:
    raw = client.get(keys.version_prefix(version) + Keys.MANIFEST)
    return orjson.loads(raw) if raw else None
