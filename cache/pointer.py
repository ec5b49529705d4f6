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
        self._issued = 0  # reads started; an answer older than the one kept is dropped
        self._kept = 0
        self._epoch = 0  # raised by expire(): a read started before it must not renew the copy

    async def get(self) -> str | None:
        """The version to serve; reads Redis only when the copy is older than the TTL or was expired."""
        if self._known and time.monotonic() < self._expires:
            return self._version
        task = self._task
        if task is None:
            task = self._task = asyncio.get_running_loop().create_task(self._read())
            task.add_done_callback(self._done)
        return await asyncio.shield(task)

    def _done(self, task: asyncio.Task) -> None:
        if self._task is task:
            self._task = None

    def expire(self) -> None:
        """Re-read on the next request (a new version or a merchandising change was announced). A read already in
        flight may have been answered before the change, so the next request starts a read of its own."""
        self._expires = 0.0
        self._epoch += 1
        self._task = None

    async def refresh(self) -> str | None:
        """Read now and wait for it: after this worker changed something, its very next request sees the change."""
        self.expire()
        return await self.read_now()

    async def read_now(self) -> str | None:
        """Read the pointer (and the generation) from Redis now (raises when Redis is unreachable) and keep it."""
        self._issued += 1
        ticket, epoch = self._issued, self._epoch
        generation = None
        if self.generation_key is None:
            raw = await self.client.get(self.key)
        else:
            raw, generation = await self.client.mget(self.key, self.generation_key)
        if ticket > self._kept:  # a read started later may have answered first: never go back to an older answer
            self._kept = ticket
            if self.generation_key is not None:
                self.generation = int(generation or 0)
            self._keep(raw.decode() if raw else None, renew=epoch == self._epoch)
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

    def _keep(self, version: str | None, renew: bool) -> None:
        changed = not self._known or version != self._version
        self._version, self._known = version, True
        if renew:
            self._expires = time.monotonic() + self.ttl
        if changed and self.on_change is not None:
            self.on_change(version)
