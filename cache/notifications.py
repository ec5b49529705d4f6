"""A worker's subscription to the publisher's and the ingestion's announcements.

``<prefix>:pointer`` carries a version id whenever ``current`` moves (publish, rollback): the worker re-reads its
pointer on the next request instead of waiting for the TTL. ``<prefix>:live`` carries the visitors of each ingested
batch: they join the worker's live index at once. The subscription runs on a connection of its own without
redis-py's silent reconnects, so a lost connection is noticed (the live index counts everyone as maybe live) and,
once subscribed again, the live index is read whole, so nothing announced meanwhile is missed. On a Redis Cluster,
PUBLISH reaches every node, so any node will do; the next one is tried when one fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from cache.keys import Keys
from cache.live_index import LiveIndex
from cache.pointer import Pointer
from cache.server import is_cluster

log = logging.getLogger("reco.cache")
RETRY_SECONDS = 0.5
LISTEN_SECONDS = 1.0  # longest wait for a message before the loop looks at its stop flag


def subscriber_clients(client: Any) -> Callable[[int], Awaitable[aioredis.Redis]]:
    """For attempt ``k``, a plain asyncio client (no retries, no read timeout) to a server or cluster node."""
    if is_cluster(client):

        async def node_client(k: int) -> aioredis.Redis:
            if not client.get_nodes():
                await client.initialize()  # the cluster client learns the nodes on first use
            nodes = client.get_nodes()
            node = nodes[k % len(nodes)]
            return aioredis.Redis(host=node.host, port=node.port, retry=Retry(NoBackoff(), 0), health_check_interval=5)

        return node_client
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "socket_timeout": None, "retry": Retry(NoBackoff(), 0)}

    async def same_server(_k: int) -> aioredis.Redis:
        return aioredis.Redis(
            connection_pool=aioredis.ConnectionPool(connection_class=pool.connection_class, **kwargs),
            health_check_interval=5,
        )

    return same_server


class Notifications:
    """Listens in a background task; :meth:`start` and :meth:`stop` from the application's lifespan."""

    def __init__(self, client: Any, keys: Keys, pointer: Pointer, live: LiveIndex) -> None:
        self.client = client
        self.keys = keys
        self.pointer = pointer
        self.live = live
        self._make = subscriber_clients(client)
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._sync_lock = asyncio.Lock()
        self.subscribed = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        # A flag as well as cancel(): redis-py's read timeout can swallow a cancellation that arrives with it.
        self._stopping = True
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(self._task, 2 * LISTEN_SECONDS)

    async def resync(self) -> None:
        """Read the live index whole (after subscribing, and when the served version changes)."""
        async with self._sync_lock:
            await self.live.sync(self.client, self.keys.live_active)

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            sub = pubsub = None
            try:
                sub = await self._make(attempt)
                pubsub = sub.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self.keys.pointer_channel, self.keys.live_channel)
                self.live.subscribed()
                self.pointer.expire()  # a move may have been announced while we were not listening
                await self.resync()
                self.subscribed.set()
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection lost or refused: listen again, elsewhere on a cluster
                log.warning("announcements unavailable", extra={"error": type(exc).__name__})
            finally:
                self.subscribed.clear()
                self.live.unsubscribed()
                with contextlib.suppress(Exception):
                    if pubsub is not None:
                        await pubsub.aclose()
                    if sub is not None:
                        await sub.aclose()
            attempt += 1
            await asyncio.sleep(RETRY_SECONDS)

    async def _listen(self, pubsub: Any) -> None:
        pointer_channel = self.keys.pointer_channel.encode()
        while not self._stopping:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=LISTEN_SECONDS)
            if message is None:
                continue
            if message["channel"] == pointer_channel:
                self.pointer.expire()
            else:
                self.live.note(message["data"].decode().split())
