"""What the app holds while it runs: the Redis reader, the session models and the fallback, opened at start-up.

Settings and metrics exist from :func:`api.app.create_app` on (``app.state.settings``, ``app.state.metrics``); the
rest is opened by :func:`lifespan` into ``app.state.services``. Routes reach both through :mod:`api.deps`.
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from threadpoolctl import threadpool_limits

from api.answer_cache import AnswerCache
from api.fallback import Fallback
from api.merchandising import MerchCache
from api.monitoring import Metrics, configure_logging, log
from api.session_models import SessionModels
from cache.keys import Keys
from cache.reader import Reader
from cache.server import connect
from recommender.config import Settings
from recommender.serving.merchandising import Rotation


@dataclasses.dataclass
class Services:
    """The running service's parts; one instance per app, built by :func:`lifespan`."""

    settings: Settings
    metrics: Metrics
    reader: Reader
    sessions: SessionModels
    fallback: Fallback
    merch: MerchCache
    answers: AnswerCache


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Connect to Redis and start the fallback refresher; close both on shutdown."""
    settings: Settings = app.state.settings
    threadpool_limits(1, "blas")  # fold-ins are tiny; a BLAS thread pool per request would cost more than it saves
    configure_logging()
    handle = connect(settings.redis.url, settings.redis.data_dir, settings.redis.cluster)
    timeout = settings.redis.timeout_seconds
    client = handle.async_client(
        read_from_replicas=settings.redis.read_from_replicas, socket_timeout=timeout, socket_connect_timeout=timeout
    )
    reader = Reader(
        client, Keys(settings.redis.key_prefix), settings.redis.pointer_ttl_ms / 1000, settings.api.near_cache_mb
    )
    answers = AnswerCache(settings.api.answer_cache_mb)
    app.state.metrics.watch_near_cache(reader.near, answers)
    fallback = Fallback(reader, settings.api.fallback_refresh_seconds)
    rotation = Rotation(settings.api.rotation_impressions, timedelta(hours=settings.api.rotation_hours))
    merch = MerchCache(reader, rotation)
    app.state.services = Services(settings, app.state.metrics, reader, SessionModels(reader), fallback, merch, answers)
    reader.start()  # announcements of new versions, merchandising changes and visitors with live events
    fallback.start()
    # Everything allocated so far lives as long as the process: keep it out of the collector's full passes, which
    # otherwise walk it again and again and show up as latency spikes.
    gc.freeze()
    log.info(
        "started",
        extra={
            "redis": "cluster" if settings.redis.cluster else "url" if settings.redis.url else "embedded",
            "near_cache_mb": settings.api.near_cache_mb,
            "answer_cache_mb": settings.api.answer_cache_mb,
            "read_key": bool(settings.api.read_api_key),
            "write_key": bool(settings.api.api_key),
        },
    )
    try:
        yield
    finally:
        await fallback.stop()
        await reader.stop()
        await client.aclose()
        handle.close()
