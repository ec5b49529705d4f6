"""The FastAPI application: every answer comes from the published version in Redis, never recomputed per request.

``create_app`` only assembles the parts: the operations middleware, the exception handlers of :mod:`api.errors`
and one router per audience from :mod:`api.routes`. A new audience is a new router module plus one
``include_router`` line below; what the app holds while running is in :mod:`api.state`, reached through
:mod:`api.deps`.
"""

from __future__ import annotations

import redis.exceptions
from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError

from api import errors
from api.dashboard import router as dashboard_router
from api.docs_assets import router as docs_router
from api.monitoring import Metrics, OperationsMiddleware
from api.routes import email, events, experiment, marketing, merchandising, operations, storefront
from api.security import require_read_key
from api.state import lifespan
from cache.publisher import NoPreviousVersion
from recommender.config import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="Shop recommendations",
        version="0.1.0",
        description=(
            "Personal picks, bestsellers, new arrivals, similar items and next likely purchases for an online shop, "
            "answered from the nightly published version in Redis. Every list says which list answered (`source`) "
            "and the model `version`."
        ),
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc are served with assets from the package (api.docs_assets)
        redoc_url=None,
        # Only keyed deployments pay for the dependency on every request.
        dependencies=[Depends(require_read_key)] if settings.api.read_api_key else [],
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.add_middleware(
        OperationsMiddleware,
        metrics=app.state.metrics,
        max_body_bytes=settings.api.max_body_bytes,
        request_log=settings.api.request_log,
        slow_ms=settings.api.slow_request_ms,
    )
    app.add_exception_handler(errors.ApiError, errors.api_error)
    app.add_exception_handler(NoPreviousVersion, errors.no_previous_version)
    app.add_exception_handler(redis.exceptions.RedisError, errors.redis_unavailable)
    app.add_exception_handler(RequestValidationError, errors.invalid_request)
    app.include_router(storefront.router)
    app.include_router(email.router)
    app.include_router(marketing.router)
    app.include_router(operations.router)
    app.include_router(events.router)
    app.include_router(merchandising.router)
    app.include_router(experiment.router)
    app.include_router(docs_router)
    app.include_router(dashboard_router)
    return app
