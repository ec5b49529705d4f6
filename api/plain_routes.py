"""Routes for pages and assets that hold no shop data (the dashboard's shell, the API documentation).

They are plain Starlette routes, so the app-wide read-key dependency (an APIRoute feature) does not apply to them.
FastAPI records only its own routes in ``scope["route"]``; these record a stand-in with their path template, so the
metrics middleware counts them under their route rather than as "unmatched".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import SimpleNamespace

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

Endpoint = Callable[[Request], Awaitable[Response]]


def add_plain_route(router: APIRouter, path: str, endpoint: Endpoint) -> None:
    """Add a GET route outside the OpenAPI schema and outside the app-wide dependencies."""
    label = SimpleNamespace(path=path)

    async def labelled(request: Request) -> Response:
        request.scope.setdefault("route", label)
        return await endpoint(request)

    labelled.__name__ = endpoint.__name__
    router.add_route(path, labelled, methods=["GET"], include_in_schema=False)
