"""Typed dependencies of the routes: ``reader: ReaderDep`` in a handler's signature gives it the Redis reader.

Each getter reads ``request.app.state`` directly (no dependency chains) and is ``async`` (FastAPI runs a plain
``def`` dependency in its thread pool: one thread hop per request). A dependency still costs FastAPI a resolution
step on every request (about 10 us measured, some 3% of a bestseller list), so the storefront routes, which answer
the page views, take the request and call :func:`services` instead; the others use the ``...Dep`` types.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.monitoring import Metrics
from api.state import Services
from cache.reader import Reader
from recommender.config import Settings


def services(request: Request) -> Services:
    """The running service's parts, for handlers that take the request itself."""
    return request.app.state.services


async def get_services(request: Request) -> Services:
    return request.app.state.services


async def get_reader(request: Request) -> Reader:
    return request.app.state.services.reader


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


ServicesDep = Annotated[Services, Depends(get_services)]
ReaderDep = Annotated[Reader, Depends(get_reader)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
