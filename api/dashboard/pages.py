"""The dashboard's pages: one HTML shell for every deep link, and its scripts and styles, all from the package.

These are plain routes (api.plain_routes), outside the read-key check: the shell and its assets hold no shop data.
The page's script fetches the data from the keyed JSON endpoints (api.dashboard.data) and asks for the key when they
answer 401.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response

from api.plain_routes import add_plain_route

STATIC = Path(__file__).parent / "static"
ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png"}
ASSETS = {p.name: p for p in STATIC.iterdir() if p.suffix in ASSET_TYPES}
"""The only files served: a fixed list, so no request path ever reaches the file system."""
PAGES = (
    "/dashboard",
    "/dashboard/quality",
    "/dashboard/repeat-sales",
    "/dashboard/customers/{user_id}",
    "/dashboard/items/{item_id}",
)

# Asset URLs carry a hash of their content, so browsers may keep them for a day and still see every new release.
_STAMP = hashlib.sha256(b"".join(ASSETS[name].read_bytes() for name in sorted(ASSETS))).hexdigest()[:12]
SHELL = (STATIC / "index.html").read_text(encoding="utf-8").replace("{{stamp}}", _STAMP)

router = APIRouter()


async def shell(request: Request) -> Response:
    return HTMLResponse(SHELL, headers={"Cache-Control": "no-cache"})


async def asset(request: Request) -> Response:
    path = ASSETS.get(request.path_params["name"])
    if path is None:
        return PlainTextResponse("Not found", status_code=404)
    return FileResponse(path, media_type=ASSET_TYPES[path.suffix], headers={"Cache-Control": "public, max-age=86400"})


for _path in PAGES:
    add_plain_route(router, _path, shell)
add_plain_route(router, "/dashboard/static/{name}", asset)
