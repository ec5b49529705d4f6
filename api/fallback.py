"""What /recommend answers while Redis is unavailable: the last bestsellers this process saw.

A background task refreshes the copy from the published version every ``interval`` seconds; when Redis fails, the
last copy is served, marked degraded, instead of a wave of errors. Redis clients reconnect by themselves, so the
service recovers as soon as Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from cache.keys import Keys
from cache.reader import Reader

log = logging.getLogger("reco.api")


class Fallback:
    def __init__(self, reader: Reader, interval: float = 15.0) -> None:
        self.reader = reader
        self.interval = interval
        self.version: str | None = None
        self.lists: dict[str | None, list[dict[str, Any]]] = {}
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()

    async def refresh(self) -> None:
        """Copy global and per-category bestsellers (with item metadata) of the current version."""
        version, (categories,) = await self.reader.fetch(Keys.CATEGORIES)
        if version is None:
            return
        names: list[str | None] = [None, *(categories or [])]
        _, lists = await self.reader.fetch(*(Keys.best(c) for c in names))
        ids = sorted({r[0] for ranked in lists if ranked for r in ranked[:100]})
        meta = await self.reader.item_metadata(version, ids)
        self.lists = {
            name: [{"item_id": i, "score": s, **(meta.get(i) or {})} for i, s in ranked[:100]]
            for name, ranked in zip(names, lists)
            if ranked
        }
        self.version = version

    def get(self, category: str | None) -> list[dict[str, Any]] | None:
        return self.lists.get(category)

    async def _loop(self) -> None:
        # The stop flag, not only the cancellation, ends the loop: a cancellation that lands in a Redis call can come
        # out as a timeout error (the client's socket timeout), which the suppress below would swallow.
        while not self._stopping.is_set():
            with contextlib.suppress(Exception):  # Redis down: keep the last copy, try again next time
                await self.refresh()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        self._stopping.set()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
