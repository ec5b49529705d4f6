"""The framework limit: a FastAPI app with one GET endpoint returning a constant JSON.

Served by bench/serving.py with exactly the uvicorn settings of ``reco serve`` (uvicorn.run with host, port, workers
and log_level="info", everything else default: uvloop + httptools when installed, access log on), so the gap between
this and ``/recommend`` is what the application itself costs per request. ``/const-sync-dep`` is the same constant
behind one no-op synchronous dependency (as ``api.security.require_read_key`` is, app-wide): it isolates the cost of
FastAPI's thread-pool hop for ``def`` dependencies.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI

CONSTANT = {"source": "constant", "version": "bench", "items": []}


def create_app() -> FastAPI:
    app = FastAPI(title="bare")

    @app.get("/const")
    async def const() -> dict:
        return CONSTANT

    def sync_noop() -> None:  # a plain `def` dependency: FastAPI runs it in the thread pool, one thread hop per request
        return None

    @app.get("/const-sync-dep", dependencies=[Depends(sync_noop)])
    async def const_sync_dep() -> dict:
        return CONSTANT

    return app


def serve(host: str, port: int, workers: int) -> None:
    """The same call as training.cli.serve, for this app."""
    import uvicorn

    uvicorn.run("bare_app:create_app", factory=True, host=host, port=port, workers=workers, log_level="info")


if __name__ == "__main__":
    import argparse
    import os
    import sys

    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    os.environ["PYTHONPATH"] = os.path.dirname(os.path.abspath(__file__)) + os.pathsep + os.environ.get("PYTHONPATH", "")
    serve(a.host, a.port, a.workers)
