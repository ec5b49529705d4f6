"""The framework limit: a FastAPI app with one GET endpoint returning a constant JSON.

Served by bench/serving.py through the same function as ``reco serve`` (``api.server.serve``: uvicorn with
log_level="info", access_log=False, one SO_REUSEPORT socket per worker, uvloop + httptools), so the gap between
this and ``/recommend`` is what the application itself costs per request. ``/const-sync-dep`` is the same constant
behind one no-op synchronous dependency: it isolates the cost of FastAPI's thread-pool hop for ``def`` dependencies.
``/redis-get`` answers with one ``GET`` through redis-py's asyncio client, set up as the API sets up its own
(``REDIS_URL``, 0.5 s socket timeouts, hiredis when installed): the floor of any endpoint that reads Redis once per
request with this framework and this client.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import Depends, FastAPI
from fastapi.responses import Response

from cache.keys import Keys

POINTER = Keys().current  # the key the API reads most

CONSTANT = {"source": "constant", "version": "bench", "items": []}


def create_app() -> FastAPI:
    clients: dict[str, aioredis.Redis] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if os.environ.get("REDIS_URL"):
            clients["redis"] = aioredis.Redis.from_url(
                os.environ["REDIS_URL"], socket_timeout=0.5, socket_connect_timeout=0.5
            )
        yield
        if clients:
            await clients["redis"].aclose()

    app = FastAPI(title="bare", lifespan=lifespan)

    @app.get("/const")
    async def const() -> dict:
        return CONSTANT

    def sync_noop() -> None:  # a plain `def` dependency: FastAPI runs it in the thread pool, one thread hop per request
        return None

    @app.get("/const-sync-dep", dependencies=[Depends(sync_noop)])
    async def const_sync_dep() -> dict:
        return CONSTANT

    @app.get("/redis-get")
    async def redis_get() -> Response:
        version = await clients["redis"].get(POINTER)
        return Response(b'{"version":"' + (version or b"") + b'"}', media_type="application/json")

    return app


if __name__ == "__main__":
    from bench_app import main

    main("bare_app:create_app", 8001)
