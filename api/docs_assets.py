"""API documentation (/docs with Swagger UI, /redoc with ReDoc) served with assets from the package, not a CDN.

FastAPI's self-hosting recipe (docs_url=None and redoc_url=None on the app, these routes instead); the Swagger UI
and ReDoc files come from the ``fastapi-offline`` package, which ships them (its wheel is the maintained copy; only
its files are used). Plain routes (api.plain_routes): the documentation stays open when a read key is configured.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response

from api.plain_routes import add_plain_route

ASSET_DIR = Path(str(files("fastapi_offline") / "static"))
ASSETS = {
    name: ASSET_DIR / name for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
}
DOCS, REDOC, OAUTH2_REDIRECT = "/docs", "/redoc", "/docs/oauth2-redirect"
ASSET_PREFIX = "/docs/assets/"

router = APIRouter()


def _urls(request: Request) -> tuple[str, str]:
    root = request.scope.get("root_path", "")
    return root + (request.app.openapi_url or "/openapi.json"), root + ASSET_PREFIX


async def swagger_ui(request: Request) -> Response:
    openapi, assets = _urls(request)
    return get_swagger_ui_html(
        openapi_url=openapi,
        title=f"{request.app.title} - Swagger UI",
        oauth2_redirect_url=request.scope.get("root_path", "") + OAUTH2_REDIRECT,
        swagger_js_url=assets + "swagger-ui-bundle.js",
        swagger_css_url=assets + "swagger-ui.css",
        swagger_favicon_url=assets + "favicon.png",
        swagger_ui_parameters={"validatorUrl": None},  # the online validator badge would call out to the internet
    )


async def redoc(request: Request) -> Response:
    openapi, assets = _urls(request)
    return get_redoc_html(
        openapi_url=openapi,
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=assets + "redoc.standalone.js",
        redoc_favicon_url=assets + "favicon.png",
        with_google_fonts=False,
    )


async def oauth2_redirect(request: Request) -> Response:
    return get_swagger_ui_oauth2_redirect_html()


REDOCLY_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
BLANK_SVG = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='1' height='1'/%3E"
_patched: dict[str, bytes] = {}


def redoc_js() -> bytes:
    """ReDoc's bundle with its one outside request (the "API docs by Redocly" logo in the menu, which ReDoc shows
    unconditionally) pointed at an inline blank image: the page then makes no request outside the service."""
    if "redoc" not in _patched:
        _patched["redoc"] = ASSETS["redoc.standalone.js"].read_bytes().replace(REDOCLY_LOGO, BLANK_SVG)
    return _patched["redoc"]


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    path = ASSETS.get(name)
    if path is None:
        return PlainTextResponse("Not found", status_code=404)
    cache = {"Cache-Control": "public, max-age=86400"}
    if name == "redoc.standalone.js":
        return Response(redoc_js(), media_type="text/javascript", headers=cache)
    return FileResponse(path, headers=cache)


add_plain_route(router, DOCS, swagger_ui)
add_plain_route(router, REDOC, redoc)
add_plain_route(router, OAUTH2_REDIRECT, oauth2_redirect)
add_plain_route(router, ASSET_PREFIX + "{name}", asset)
