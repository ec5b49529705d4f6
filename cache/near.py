"""The near cache: per process, decoded values of published versions, keyed by (version, key), bounded in bytes.

A published version never changes, so an entry needs no invalidation: a request asks for the keys of the version its
pointer names, and entries of versions no longer served simply age out of the LRU order. Missing keys (a visitor the
model does not know) are cached too, so cold visitors do not go to Redis on every page either.
"""

from __future__ import annotations

from typing import Any

from cachetools import LRUCache

# Python objects decoded from JSON take about 5x (lists of dicts) to 8.5x (lists of [item, score] pairs) the bytes
# of the JSON they came from (measured with a recursive sys.getsizeof); the larger factor keeps the bound honest
# without walking every value.
DECODED_PER_BYTE = 9
ENTRY_OVERHEAD = 200  # the key tuple, its strings and the LRU bookkeeping

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

    def put(self, version: str, key: str, value: Any, stored_bytes: int) -> None:
        """Keep ``value`` (decoded from ``stored_bytes`` bytes; None for a missing key); too large ones are skipped."""
        if self._lru is None:
            return
        size = stored_bytes * DECODED_PER_BYTE + ENTRY_OVERHEAD
        if size <= self.max_bytes:
            self._lru[(version, key)] = (value, size)

    @property
    def used_bytes(self) -> int:
        return int(self._lru.currsize) if self._lru is not None else 0

    def __len__(self) -> int:
        return len(self._lru) if self._lru is not None else 0


MISS = _MISSING
