"""Which visitors have live events, known in-process so that requests of the others never ask Redis.

The index mirrors ``{<prefix>}:live:active`` (visitors whose events are newer than what the version kept for
rollback was trained on; the job trims it after each run): a full copy is read when the worker subscribes to the
live channel and again whenever the served version changes, and every batch ingested meanwhile is announced on the
channel and noted at once. While the copy is not known to be complete (before the first read, or while the
subscription is down) every visitor counts as maybe live, so answers stay right and only cost an extra read.
"""

from __future__ import annotations

from typing import Any

# A plain set keeps lookups at one hash probe; past this many visitors (about 100 MB per worker) the index gives up
# and every visitor counts as maybe live until the job trims the live index again.
MAX_VISITORS = 1_000_000


class LiveIndex:
    def __init__(self, max_visitors: int = MAX_VISITORS) -> None:
        self.max_visitors = max_visitors
        self._users: set[str] = set()
        self._noted_during_sync: set[str] | None = None
        self._complete = False
        self._subscribed = False
        self._epoch = 0  # counts subscriptions lost: a copy read across a loss is not complete

    def maybe_live(self, user_id: str) -> bool:
        """False only when the visitor is known to have no live events."""
        return not self._complete or user_id in self._users

    @property
    def complete(self) -> bool:
        return self._complete

    def note(self, user_ids: list[str]) -> None:
        """Visitors of a batch just ingested (from the live channel, or from this worker's own ingestion)."""
        self._users.update(user_ids)
        if self._noted_during_sync is not None:
            self._noted_during_sync.update(user_ids)
        if len(self._users) > self.max_visitors:
            self._complete = False

    def subscribed(self) -> None:
        """Announcements arrive from now on (call :meth:`sync` next)."""
        self._subscribed = True

    def unsubscribed(self) -> None:
        """Announcements may be missed: count every visitor as maybe live until subscribed and synced again."""
        self._subscribed, self._complete = False, False
        self._epoch += 1

    async def sync(self, client: Any, key: str) -> None:
        """Replace the copy with the live index in Redis, keeping visitors noted while it was being read."""
        epoch = self._epoch
        self._noted_during_sync = set()
        try:
            members = await client.zrange(key, 0, -1)
        finally:
            noted, self._noted_during_sync = self._noted_during_sync, None
        self._users = {m.decode() for m in members} | noted
        self._complete = self._subscribed and epoch == self._epoch and len(self._users) <= self.max_visitors
