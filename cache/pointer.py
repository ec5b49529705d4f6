"""A worker's copy of the ``current`` pointer: trusted for a TTL, re-read at once when the publisher announces a move.

Requests pin the version their copy names, so every value of one answer comes from that version. Because the
publisher keeps a version readable for the TTL plus a grace period after it stops being served (see
:mod:`cache.publisher`), a copy up to one TTL old still finds every key it needs, and a publish or a rollback is
served within the TTL even when the announcement is lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError


class Pointer:
    """The current version id as last read from Redis, re-read when older than ``ttl`` seconds (single-flight: one
    read per worker, however many requests are waiting for it). ``generation_key``, in the pointer's slot, is read in
    the same call: a counter other state hangs on (the merchandising generation, :mod:`cache.merch`)."""

    def __init__(
        self,
        client: Any,
        key: str,
        ttl: float,
        on_change: Callable[[str | None], None] | None = None,
        generation_key: str | None = None,
    ):
        self.client = client
        self.key = key
        self.generation_key = generation_key
        self.ttl = ttl
        self.on_change = on_change
        self.generation = 0
        self._version: str | None = None
        self._known = False
        self._expires = 0.0
        self._task: asyncio.Task | None = None

    async def get(self) -> str | None:
        """The version to serve; reads Redis only when the copy is older than the TTL or was expired."""
        if self._known and time.monotonic() < self._expires:
            return self._version
        task = self._task
        if task is None:
            task = self._task = asyncio.get_running_loop().create_task(self._read())
            task.add_done_callback(self._done)
        return await asyncio.shield(task)

    def _done(self, _task: asyncio.Task) -> None:
        self._task = None

    def expire(self) -> None:
        """Re-read on the next request (the publisher announced a new version)."""
        self._expires = 0.0

    async def read_now(self) -> str | None:
        """Read the pointer (and the generation) from Redis now (raises when Redis is unreachable) and keep it."""
        if self.generation_key is None:
            raw = await self.client.get(self.key)
        else:
            raw, generation = await self.client.mget(self.key, self.generation_key)
            self.generation = int(generation or 0)
        self._keep(raw.decode() if raw else None)
        return self._version

    async def _read(self) -> str | None:
        try:
            return await self.read_now()
        except RedisError:
            if not self._known:
                raise
            # Redis (or the node holding the pointer) is away: keep serving the version we know and try again after
            # one TTL, instead of making every request wait for a failing read.
            self._expires = time.monotonic() + self.ttl
            return self._version

    def _keep(self, version: str | None) -> None:
        changed = not self._known or version != self._version
        self._version, self._known = version, True
        self._expires = time.monotonic() + self.ttl
        if changed and self.on_change is not None:
            self.on_change(version)
