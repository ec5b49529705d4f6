"""The FastAPI application: every answer comes from the published version in Redis, never recomputed per request.

``create_app`` only assembles the parts: the operations middleware, the exception handlers of :mod:`api.errors`
and one router per audience from :mod:`api.routes`. A new audience is a new router module plus one
``include_routes`` line below; what the app holds while running is in :mod:`api.state`, reached through
:mod:`api.deps`.
"""

from __future__ import annotations

import redis.exceptions
from fastapi import APIRouter, Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.routing import Route

from api import errors
from api.answer_cache import AnswerCacheMiddleware
from api.dashboard import router as dashboard_router
from api.docs_assets import router as docs_router
from api.monitoring import Metrics, OperationsMiddleware
from api.routes import email, events, experiment, marketing, merchandising, operations, storefront
from api.security import require_read_key
from api.state import lifespan
from cache.publisher import NoPreviousVersion
from recommender.config import Settings

# Everything an APIRoute was declared with, as add_api_route takes it (FastAPI 0.165).
_ROUTE_OPTIONS = (
    "response_model",
    "status_code",
    "tags",
    "dependencies",
    "summary",
    "description",
    "response_description",
    "responses",
    "deprecated",
    "methods",
    "operation_id",
    "response_model_include",
    "response_model_exclude",
    "response_model_by_alias",
    "response_model_exclude_unset",
    "response_model_exclude_defaults",
    "response_model_exclude_none",
    "include_in_schema",
    "response_class",
    "name",
    "callbacks",
    "openapi_extra",
    "generate_unique_id_function",
    "strict_content_type",
    "max_body_size",
)


def include_routes(app: FastAPI, router: APIRouter) -> None:
    """``app.include_router(router)`` with the router's routes added to the app itself.

    FastAPI 0.165 keeps an included router as one nested route and matches it candidate by candidate, twice, on every
    request: 10-40 us per request measured (more for routes further down), a tenth of a cold /recommend. Routes added
    here are the app's own, matched as plain routes are, with the app's dependencies (the read key) applied as
    include_router would. Routers whose routes are all APIRoutes or plain routes only (nested routers: include_router).
    """
    for route in router.routes:
        if isinstance(route, APIRoute):
            options = {name: getattr(route, name) for name in _ROUTE_OPTIONS}
            app.router.add_api_route(route.path, route.endpoint, route_class_override=type(route), **options)
        elif type(route) is Route:
            app.router.add_route(
                route.path,
                route.endpoint,
                methods=list(route.methods or ()),
                name=route.name,
                include_in_schema=route.include_in_schema,
            )
        else:
            raise TypeError(f"{route!r} cannot be added flat; include its router with app.include_router")


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
    app.add_middleware(AnswerCacheMiddleware)  # inside the operations middleware: its answers are counted and logged
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
    include_routes(app, storefront.router)
    include_routes(app, email.router)
    include_routes(app, marketing.router)
    include_routes(app, operations.router)
    include_routes(app, events.router)
    include_routes(app, merchandising.router)
    include_routes(app, experiment.router)
    app.include_router(docs_router)
    app.include_router(dashboard_router)
    return app
