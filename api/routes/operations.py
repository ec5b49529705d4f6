"""Operations: rollback, Prometheus metrics, liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from api.deps import MetricsDep, ReaderDep
from api.monitoring import log
from api.schemas import Health
from api.security import require_write_key
from cache.publisher import rollback_async

router = APIRouter(tags=["operations"])


@router.post(
    "/admin/rollback",
    response_model=Health,
    summary="Serve the previous version again",
    dependencies=[Depends(require_write_key)],
    responses={409: {"description": "There is no previous version."}},
)
async def admin_rollback(reader: ReaderDep) -> Health:
    """Swap the current and previous published versions (a second call undoes the first). Needs the write key."""
    version = await rollback_async(reader.client, reader.keys)  # NoPreviousVersion -> 409 (api.errors)
    reader.pointer.expire()  # this worker serves it from its next request; the others hear it announced
    log.info("rollback", extra={"version": version})
    return Health(status="ok", version=version)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus_metrics(metrics: MetricsDep) -> Response:
    return metrics.render()


@router.get("/healthz", response_model=Health, summary="Process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="Redis reachable and a version published",
    responses={503: {"model": Health}},
)
async def readyz(reader: ReaderDep) -> Any:
    try:
        version = await reader.pointer.read_now()
    except Exception as exc:  # any Redis failure means not ready
        return JSONResponse(
            Health(status="unavailable", detail=f"Redis unreachable: {type(exc).__name__}").model_dump(), 503
        )
    if version is None:
        return JSONResponse(Health(status="unavailable", detail="no published version").model_dump(), 503)
    return Health(status="ok", version=version)
