"""The dashboard's JSON: what its pages show that the list endpoints do not (versions, Redis, requests, quality, a
customer's events, an item's buyers, search). Read-only; under the read key like every read endpoint. Redis is
reached only through :mod:`cache`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from api.dashboard import schemas
from api.dashboard.request_stats import RequestStats
from api.deps import MetricsDep, ReaderDep, ServicesDep, SettingsDep
from api.errors import UnknownItem
from api.monitoring import Metrics
from api.published import fetch
from cache import status
from cache.keys import Keys
from cache.live import parse_user_events
from cache.reader import Reader
from recommender.data.loading import ID_PATTERN
from recommender.data.schema import MAX_ID_LENGTH
from recommender.marketing.activity import expand
from recommender.marketing.rfm import SEGMENTS

router = APIRouter(prefix="/dashboard/api", tags=["dashboard"])

UserP = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, description="Customer id.")]
ItemP = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, description="Item id.")]
SEARCH_LIMIT = 10


def _request_stats(request: Request, metrics: Metrics) -> RequestStats:
    """This process's request figures (kept on the app: they summarise the window between calls)."""
    state = request.app.state
    if getattr(state, "request_stats", None) is None:
        state.request_stats = RequestStats(metrics.registry)
    return state.request_stats


def version_summary(manifest: dict[str, Any] | None) -> dict[str, Any] | None:
    """A manifest as the Overview shows it: the list of hidden items becomes its count, gate figures are left out."""
    if manifest is None:
        return None
    out = {k: v for k, v in manifest.items() if k != "hidden_items"}
    out["hidden_items"] = len(manifest.get("hidden_items") or [])
    if isinstance(out.get("evaluation"), dict):
        out["evaluation"] = {k: v for k, v in out["evaluation"].items() if k != "figures"}
    return out


@router.get("/about", response_model=schemas.About, summary="What the dashboard can show")
async def about(request: Request, settings: SettingsDep) -> dict[str, Any]:
    """Which keys are configured, whether the experiment report (`GET /experiment/report`) exists, and what the RFM
    segments mean."""
    paths = {getattr(route, "path", None) for route in request.app.routes}
    return {
        "title": request.app.title,
        "read_key": bool(settings.api.read_api_key),
        "write_key": bool(settings.api.api_key),
        "experiment": "/experiment/report" in paths,
        "segments": {
            name: {"label": s.label, "description": s.description, "action": s.action, "strategy": s.strategy}
            for name, s in SEGMENTS.items()
        },
    }


@router.get("/overview", response_model=schemas.Overview, summary="Versions, Redis, live ingestion and request figures")
async def overview(request: Request, reader: ReaderDep, metrics: MetricsDep) -> dict[str, Any]:
    """The serving and the previous version (counts, stage times, gate figures, load reports), Redis health and
    durability, live events per minute over the last hour, and request rates with p50/p99 per route (this worker)."""
    client, keys = reader.client, reader.keys
    versions = await status.versions(client, keys)
    return {
        "current": version_summary(versions["current"]),
        "previous": version_summary(versions["previous"]),
        "redis": await status.server_info(client),
        "live": await status.live_ingestion(client, keys),
        "requests": _request_stats(request, metrics).summary(),
    }


@router.get(
    "/quality", response_model=schemas.Quality, summary="Quality figures of the serving version and of the latest runs"
)
async def quality(reader: ReaderDep) -> dict[str, Any]:
    """The promotion gate's figures for the serving version (production list against recent popularity, every
    metric), the gate's main figures of the latest runs (published or refused), and the latest offline evaluation
    recorded with `reco evaluate --publish` (every baseline)."""
    client, keys = reader.client, reader.keys
    versions = await status.versions(client, keys)
    current = versions["current"] or {}
    return {
        "version": current.get("version"),
        "gate": current.get("evaluation"),
        "log": await status.quality_log(client, keys),
        "offline": await status.evaluation(client, keys),
    }


async def _with_metadata(reader: Reader, version: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    meta = await reader.item_metadata(version, [r["item_id"] for r in rows])
    return [{**r, **(meta[r["item_id"]] or {"title": None, "category": None, "price": None})} for r in rows]


@router.get("/customers/{user_id}", response_model=schemas.Customer, summary="A customer's segment and latest events")
async def customer(reader: ReaderDep, user_id: UserP) -> dict[str, Any]:
    """RFM segment, the latest events the job saw (purchases and others), the live events since, and which lists
    exist for the customer (so the page asks only for those)."""
    version, (segment, history, personal, customer_row) = await fetch(
        reader, Keys.segment(user_id), Keys.history(user_id), Keys.user(user_id), Keys.customer(user_id)
    )
    history = history or []
    live_raw = await reader.live_events(user_id)
    if segment:
        info = SEGMENTS[segment["segment"]]
        segment = {**segment, "label": info.label, "description": info.description, "action": info.action}
        segment["strategy"] = info.strategy
    stored = [{**expand(row), "source": "history"} for row in history]
    live = [
        {"item_id": i, "event_type": kind, "timestamp": ts.isoformat(timespec="seconds"), "source": "live"}
        for kind, i, ts in parse_user_events(live_raw)
    ]
    return {
        "version": version,
        "user_id": user_id,
        "segment": segment,
        "events": await _with_metadata(reader, version, live + stored),
        "has_personal": personal is not None or customer_row is not None,
        "has_purchases": segment is not None,
        "has_live": bool(live),
    }


@router.get(
    "/items/{item_id}",
    response_model=schemas.Item,
    summary="An item's metadata and who buys it again",
    responses={404: {"description": "The published version knows nothing of the item."}},
)
async def item(reader: ReaderDep, services: ServicesDep, item_id: ItemP) -> dict[str, Any]:
    """Title, category, price and availability; buyers, repeat buyers, how many times buyers bought it and the top
    repeat buyers; whether it has similar items. 404 when the published version knows nothing of the item."""
    version, (stats,) = await fetch(reader, Keys.item_stats(item_id))
    meta = (await reader.item_metadata(version, [item_id]))[item_id]
    (has_similar,) = await status.exists(reader.client, reader.keys, version, Keys.similar(item_id))
    if not has_similar:  # left to compute on request when the item had no recent event
        model = await services.sessions.get(version)
        has_similar = model is not None and item_id in model.index
    if meta is None and stats is None and not has_similar:
        raise UnknownItem(item_id)
    manifest = await services.sessions.manifest(version)
    return {
        "version": version,
        "item_id": item_id,
        **(meta or {"title": None, "category": None, "price": None}),
        "available": item_id not in set(manifest.get("hidden_items") or []),
        "stats": stats,
        "has_similar": has_similar,
    }


@router.get("/search", response_model=schemas.Search, summary="Find a customer or an item")
async def search(
    request: Request,
    reader: ReaderDep,
    q: Annotated[str, Query(min_length=1, max_length=200, description="Id or title words.")],
) -> dict[str, Any]:
    """A customer by exact id; items by exact id, then id prefix, then title containing every word of `q`."""
    version, _ = await fetch(reader)
    text = q.strip()
    customers: list[str] = []
    if text and len(text) <= MAX_ID_LENGTH:
        found = await status.exists(
            reader.client, reader.keys, version, Keys.segment(text), Keys.user(text), Keys.customer(text)
        )
        customers = [text] if any(found) else []
    catalogue = await _catalogue(request, reader, version)
    return {"version": version, "customers": customers, "items": match_items(catalogue, text, SEARCH_LIMIT)}


async def _catalogue(request: Request, reader: Reader, version: str) -> dict[str, dict[str, Any]]:
    """Every item's metadata of the version, read once per version and process."""
    state = request.app.state
    cached = getattr(state, "dashboard_catalogue", None)
    if cached is None or cached[0] != version:
        state.dashboard_catalogue = cached = (
            version,
            await status.item_catalogue(reader.client, reader.keys, version),
        )
    return cached[1]


def match_items(catalogue: dict[str, dict[str, Any]], text: str, limit: int) -> list[dict[str, Any]]:
    """Items whose id is ``text``, then whose id starts with it, then whose title contains all its words."""
    low = text.lower()
    words = low.split()
    exact = [i for i in catalogue if i.lower() == low]
    prefix = sorted(i for i in catalogue if i.lower().startswith(low) and i.lower() != low)
    titled = sorted(
        i
        for i, m in catalogue.items()
        if words and all(w in (m.get("title") or "").lower() for w in words) and not i.lower().startswith(low)
    )
    found = (exact + prefix + titled)[:limit]
    return [{"item_id": i, "title": catalogue[i].get("title"), "category": catalogue[i].get("category")} for i in found]
