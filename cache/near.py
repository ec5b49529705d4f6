"""The near cache: per process, decoded values of published versions, keyed by (version, key), bounded in bytes.

A published version never changes, so an entry needs no invalidation: a request asks for the keys of the version its
pointer names, and entries of versions no longer served simply age out of the LRU order. Missing keys (a visitor the
model does not know) are cached too, so cold visitors do not go to Redis on every page either.
"""

from __future__ import annotations

import sys
from typing import Any

from cachetools import LRUCache

ENTRY_OVERHEAD = 200  # the key tuple, its strings and the LRU bookkeeping
SAMPLED_BEYOND = 4  # longer lists are sized from their first element (the lists kept are homogeneous)


def estimated_bytes(value: Any) -> int:
    """Memory of a decoded value (sys.getsizeof, recursively; a long list as its first element times its length).

    Strings are counted although item ids are mostly shared with the version's catalogue, so the estimate errs high:
    about 1.5x for a list of [item, score] pairs, measured against a full recursive count on a demo shop."""
    if isinstance(value, list | tuple):
        if len(value) > SAMPLED_BEYOND:
            return sys.getsizeof(value) + len(value) * estimated_bytes(value[0])
        return sys.getsizeof(value) + sum(estimated_bytes(v) for v in value)
    if isinstance(value, dict):
        return sys.getsizeof(value) + sum(estimated_bytes(v) for v in value.values())
    return sys.getsizeof(value) if value is not None else 0


_MISSING = object()


class NearCache:
    """A bounded LRU of decoded values (``max_mb`` 0 turns it off: every lookup misses, nothing is kept)."""

    def __init__(self, max_mb: float) -> None:
        self.max_bytes = int(max_mb * 2**20)
        self._lru: LRUCache | None = (
            LRUCache(maxsize=self.max_bytes, getsizeof=lambda entry: entry[1]) if self.max_bytes > 0 else None
        )
        self.hits = 0
        self.misses = 0

    def get(self, version: str, key: str) -> Any:
        """The cached value (None for a key known to be missing), or :data:`MISS`."""
        if self._lru is not None:
            entry = self._lru.get((version, key), _MISSING)
            if entry is not _MISSING:
                self.hits += 1
                return entry[0]
        self.misses += 1
        return MISS

    def put(self, version: str, key: str, value: Any) -> None:
        """Keep ``value`` (None for a missing key); values larger than the whole cache are skipped."""
        if self._lru is None:
            return
        size = estimated_bytes(value) + ENTRY_OVERHEAD
        if size <= self.max_bytes:
            self._lru[(version, key)] = (value, size)

    @property
    def used_bytes(self) -> int:
        return int(self._lru.currsize) if self._lru is not None else 0

    def __len__(self) -> int:
        return len(self._lru) if self._lru is not None else 0


MISS = _MISSING
