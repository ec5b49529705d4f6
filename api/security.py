"""API keys: writing endpoints always need the write key; read endpoints need a key only when configured.

Keys come from configuration (RECO_API_KEY, RECO_READ_API_KEY), are compared in constant time, and are never
logged (the request log records method, route, status and timing only).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="RECO_API_KEY to write; RECO_READ_API_KEY (if set) to read."
)
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})


def key_matches(given: str | None, *expected: str | None) -> bool:
    """``given`` is one of the configured keys (constant-time comparison)."""
    return bool(given) and any(e and secrets.compare_digest(given.encode(), e.encode()) for e in expected)


async def require_write_key(request: Request, key: Annotated[str | None, Security(api_key_header)]) -> None:
    """Writing needs the configured API key; with none configured, writing is switched off."""
    expected = request.app.state.settings.api.api_key
    if not expected:
        raise HTTPException(403, "Writing is disabled: set RECO_API_KEY to enable it.")
    if not key_matches(key, expected):
        raise HTTPException(401, "Missing or wrong X-API-Key.", headers={"WWW-Authenticate": "X-API-Key"})


async def require_read_key(request: Request, key: Annotated[str | None, Security(api_key_header)]) -> None:
    """With RECO_READ_API_KEY set, reading needs it (or the write key); health, metrics and docs stay open."""
    settings = request.app.state.settings
    if not settings.api.read_api_key or request.url.path in OPEN_PATHS:
        return
    if not key_matches(key, settings.api.read_api_key, settings.api.api_key):
        raise HTTPException(401, "Missing or wrong X-API-Key.", headers={"WWW-Authenticate": "X-API-Key"})
