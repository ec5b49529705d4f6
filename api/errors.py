"""The API's exceptions and the handlers that turn them into HTTP answers (installed by :func:`api.app.create_app`).

Routes raise these (or let the cache's own exceptions through) instead of building error answers themselves, so
every status code and message of the service is decided here.
"""

from __future__ import annotations

from typing import Any

import redis.exceptions
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.monitoring import log
from cache.publisher import NoPreviousVersion


class ApiError(Exception):
    """An answer other than 200, as ``{"detail": detail}`` with ``status``."""

    status = 500

    def __init__(self, detail: Any) -> None:
        super().__init__(detail)
        self.detail = detail


class UnknownCategory(ApiError):
    status = 404

    def __init__(self, category: str) -> None:
        super().__init__(f"Unknown category '{category}'.")


class UnknownItem(ApiError):
    status = 404

    def __init__(self, item_id: str) -> None:
        super().__init__(f"Unknown item '{item_id}'.")


class UnknownCustomer(ApiError):
    """The customer has no purchase history in the published version."""

    status = 404

    def __init__(self, user_id: str) -> None:
        super().__init__(f"Customer '{user_id}' has no purchase history.")


class UnknownRule(ApiError):
    status = 404

    def __init__(self, name: str) -> None:
        super().__init__(f"Unknown rule '{name}'.")


class TooManyItems(ApiError):
    status = 413

    def __init__(self, limit: int, size: int) -> None:
        super().__init__(f"At most {limit} items per call; this one has {size}.")


class NoExperimentReport(ApiError):
    status = 404

    def __init__(self) -> None:
        super().__init__("No experiment report yet: the nightly job computes one on each run.")


class NothingPublished(ApiError):
    status = 503

    def __init__(self) -> None:
        super().__init__("No recommendations are published yet: run `reco train` first.")


class BatchTooLarge(ApiError):
    status = 413

    def __init__(self, limit: int, size: int) -> None:
        super().__init__(f"A batch holds at most {limit} events (RECO_MAX_EVENTS_BATCH); got {size}.")


class InvalidEvents(ApiError):
    """Live events that fail the job's validation rules: ``errors`` names each by position, field and value."""

    status = 422

    def __init__(self, total: int, bad: int, errors: list[dict[str, Any]]) -> None:
        first = errors[0]
        super().__init__(
            {
                "message": f"{bad} of {total} events are invalid, nothing was stored; first: "
                f"event {first['position']} {first['field']}={first['value']!r} {first['reason']}.",
                "errors": errors,
            }
        )


class ImplausibleItems(ApiError):
    """Catalogue updates whose ``created_at`` lies outside the plausible time window (the job's rule for files)."""

    status = 422

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        first = errors[0]
        super().__init__(
            {
                "message": f"{len(errors)} items are invalid, nothing was stored; first: item {first['position']} "
                f"{first['field']}={first['value']!r} {first['reason']}.",
                "errors": errors,
            }
        )


async def api_error(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, exc.status)


async def no_previous_version(request: Request, exc: NoPreviousVersion) -> JSONResponse:
    return JSONResponse({"detail": "There is no previous version to roll back to."}, 409)


async def redis_unavailable(request: Request, exc: redis.exceptions.RedisError) -> JSONResponse:
    route = getattr(request.scope.get("route"), "path", "unmatched")
    request.app.state.metrics.redis_errors.labels(route).inc()
    log.warning("redis error", extra={"route": route, "error": type(exc).__name__})
    return JSONResponse({"detail": "The recommendation cache (Redis) is unavailable; try again shortly."}, 503)


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with one readable message naming each bad field, plus FastAPI's per-field details."""
    errors = exc.errors()
    message = "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in errors[:5])
    detail = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in errors]
    return JSONResponse({"message": f"Invalid request: {message}", "detail": detail}, status_code=422)
