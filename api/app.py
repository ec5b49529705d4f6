"""The FastAPI application: every answer comes from the published version in Redis, never recomputed per request."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Annotated, Any

import orjson
import redis.exceptions
from fastapi import Body, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from threadpoolctl import threadpool_limits

from api.dashboard import router as dashboard_router
from api.docs_assets import router as docs_router
from api.events import recently_viewed
from api.events import router as events_router
from api.fallback import Fallback
from api.operations import Metrics, OperationsMiddleware, configure_logging, log
from api.schemas import (
    MAX_BATCH,
    BatchRequest,
    BatchResponse,
    CustomerSegment,
    Health,
    ItemList,
    Kpis,
    NextPurchase,
    Period,
    Segments,
    Strategy,
)
from api.security import require_read_key, require_write_key
from api.session_models import SessionModels
from cache.keys import Keys
from cache.live import parse_user_events
from cache.publisher import ROLLBACK_SCRIPT
from cache.reader import Reader, decode
from cache.server import connect
from recommender.config import Settings
from recommender.data.loading import ID_PATTERN
from recommender.data.schema import MAX_ID_LENGTH
from recommender.marketing.rfm import SEGMENTS
from recommender.models.session import reciprocal_rank_fusion

N = Annotated[int, Query(ge=1, le=100, description="Number of items.")]
UserQ = Annotated[
    str,
    Query(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=ID_PATTERN,
        description="Visitor or customer id.",
        examples=["17850"],
    ),
]
OptUserQ = Annotated[
    str | None,
    Query(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, description="Personalise for this visitor."),
]
UserP = Annotated[
    str,
    Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, description="Customer id.", examples=["17850"]),
]
ItemP = Annotated[
    str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, description="Item id.", examples=["85123A"])
]
CategoryQ = Annotated[
    str | None, Query(min_length=1, max_length=200, description="Only items of this category.", examples=["HOLDER"])
]
ExcludeQ = Annotated[
    str | None, Query(max_length=20_000, description="Comma-separated item ids to leave out (e.g. the cart).")
]


NO_METADATA = {"title": None, "category": None, "price": None}


def json_response(content: dict[str, Any]) -> Response:
    """Hot paths answer with orjson bytes built here; their response_model still documents the shape."""
    return Response(orjson.dumps(content), media_type="application/json")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    keys = Keys(settings.key_prefix)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threadpool_limits(1, "blas")  # fold-ins are tiny; a BLAS thread pool per request would cost more than it saves
        configure_logging()
        handle = connect(settings.redis_url, settings.data_dir)
        timeout = settings.redis_timeout_seconds
        client = handle.async_client(socket_timeout=timeout, socket_connect_timeout=timeout)
        app.state.reader = Reader(client, keys)
        app.state.sessions = SessionModels(app.state.reader)
        app.state.fallback = Fallback(app.state.reader, settings.fallback_refresh_seconds)
        app.state.fallback.start()
        # Everything allocated so far lives as long as the process: keep it out of the collector's full passes, which
        # otherwise walk it again and again and show up as latency spikes.
        gc.freeze()
        log.info(
            "started",
            extra={
                "redis": "url" if settings.redis_url else "embedded",
                "read_key": bool(settings.read_api_key),
                "write_key": bool(settings.api_key),
            },
        )
        try:
            yield
        finally:
            await app.state.fallback.stop()
            await client.aclose()
            handle.close()

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
        dependencies=[Depends(require_read_key)] if settings.read_api_key else [],
    )
    metrics = Metrics()
    app.state.settings = settings
    app.state.keys = keys
    app.state.metrics = metrics
    app.add_middleware(
        OperationsMiddleware,
        metrics=metrics,
        max_body_bytes=settings.max_body_bytes,
        request_log=settings.request_log,
        slow_ms=settings.slow_request_ms,
    )

    @app.exception_handler(redis.exceptions.RedisError)
    async def redis_unavailable(request: Request, exc: redis.exceptions.RedisError) -> JSONResponse:
        route = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.redis_errors.labels(route).inc()
        log.warning("redis error", extra={"route": route, "error": type(exc).__name__})
        return JSONResponse({"detail": "The recommendation cache (Redis) is unavailable; try again shortly."}, 503)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in errors[:5])
        detail = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in errors]
        return JSONResponse({"message": f"Invalid request: {message}", "detail": detail}, status_code=422)

    def reader(request: Request) -> Reader:
        return request.app.state.reader

    async def fetch_raw(
        request: Request, live_user: str | None, *suffixes: str
    ) -> tuple[str, list[bytes | None], list[bytes]]:
        """The current version, the stored values of ``suffixes`` and ``live_user``'s live events; 503 if nothing is
        published."""
        version, values, live_raw = await reader(request).fetch_raw(live_user, *suffixes)
        if version is None:
            raise HTTPException(503, "No recommendations are published yet: run `reco train` first.")
        return version, values, live_raw

    async def fetch(request: Request, *suffixes: str) -> tuple[str, list[Any]]:
        version, values, _ = await fetch_raw(request, None, *suffixes)
        return version, [await reader(request).decode(version, v) for v in values]

    async def items_out(request: Request, version: str, ranked: list[Any]) -> list[dict[str, Any]]:
        """Stored entries ([item, score] pairs or next-purchase dicts) with title, category and price added."""
        ids = [r[0] if isinstance(r, list) else r["item_id"] for r in ranked]
        meta = await reader(request).item_metadata(version, ids)
        return [
            {"item_id": item_id, "score": r[1], **(meta[item_id] or NO_METADATA)}
            if isinstance(r, list)
            else {**r, **(meta[item_id] or NO_METADATA)}
            for r, item_id in zip(ranked, ids)
        ]

    async def computed(
        request: Request, version: str, personal: list[Any] | None, picks: list[Any] | None, customer: bytes | None
    ) -> tuple[list[Any] | None, list[Any] | None]:
        """Personal and next-purchase lists, computed on request from the customer's stored model row when the job
        did not precompute them (customers not active lately); stored lists are returned as they are."""
        if customer is None or (personal is not None and picks is not None):
            return personal, picks
        found = (await request.app.state.sessions.customer_lists(version, [customer]))[0]
        if found is None:
            return personal, picks
        return (personal if personal is not None else found[0]), (picks if picks is not None else found[1])

    async def in_category(request: Request, version: str, ranked: list[Any], category: str) -> list[Any]:
        meta = await reader(request).item_metadata(version, [r[0] for r in ranked])
        return [r for r in ranked if (meta.get(r[0]) or {}).get("category") == category]

    @app.get("/recommend", response_model=ItemList, tags=["storefront"], summary="Personal picks for a visitor")
    async def recommend(
        request: Request, user_id: UserQ, n: N = 10, category: CategoryQ = None, exclude: ExcludeQ = None
    ) -> Response:
        """The visitor's personal picks. Events sent to `POST /events` count at once: a visitor the model does not
        know gets picks folded in from their live events (`session`), a known one gets them blended in
        (`personal+session`), items bought since the last run drop out when the job excludes bought items, and a
        visitor with nothing to go on gets bestsellers. With `category`, only items of that category; `exclude`
        leaves out items (e.g. the cart). A list shorter than `n` after filtering is topped up with bestsellers."""
        skip = set(filter(None, exclude.split(","))) if exclude else set()
        try:
            # Bestsellers are decoded only when needed (a category check or a list to top up): most visitors never do.
            version, (personal_raw, best_raw, customer_raw), live_raw = await fetch_raw(
                request, user_id, Keys.user(user_id), Keys.best(category), Keys.customer(user_id)
            )
        except redis.exceptions.RedisError as exc:
            saved = request.app.state.fallback.get(category)
            if saved is None:
                raise exc
            metrics.fallbacks.labels("/recommend").inc()
            items = [r for r in saved if r["item_id"] not in skip][:n]
            return json_response(
                {
                    "source": "bestsellers",
                    "degraded": True,
                    "version": request.app.state.fallback.version,
                    "items": items,
                }
            )
        personal = await reader(request).decode(version, personal_raw)
        if personal is None and customer_raw is not None:
            personal, _ = await computed(request, version, None, None, customer_raw)
        metrics.lookup("personal", personal is not None)
        if category is not None and best_raw is None:
            raise HTTPException(404, f"Unknown category '{category}'.")
        sources: list[str] = []
        ranked: list[Any] = personal or []
        if skip:
            ranked = [r for r in ranked if r[0] not in skip]
        if personal:
            sources.append("personal")
        if live_raw:
            live_events = parse_user_events(live_raw)
            info = await request.app.state.sessions.manifest(version)
            if info.get("params", {}).get("lists", {}).get("exclude_purchased", True):
                skip |= {item for kind, item, _ in live_events if kind == "purchase"}
                ranked = [r for r in ranked if r[0] not in skip]
            model = await request.app.state.sessions.get(version)
            session = (
                model.recommend(live_events, 100, datetime.now(timezone.utc).replace(tzinfo=None), exclude=sorted(skip))
                if model
                else []
            )
            if session:
                ranked = (
                    [list(r) for r in reciprocal_rank_fusion([tuple(r) for r in ranked], session, 100)]
                    if ranked
                    else [list(r) for r in session]
                )
                sources.append("session")
        if category is not None and ranked:
            ranked = await in_category(request, version, ranked, category)
        picks = ranked[:n]
        fill: list[Any] = []
        if len(picks) < n:
            taken = {r[0] for r in picks} | skip
            fill = [r for r in decode(best_raw) or [] if r[0] not in taken][: n - len(picks)]
        if not picks:
            sources = []
        source = "+".join(sources + (["bestsellers"] if fill or not sources else []))
        return json_response(
            {
                "source": source,
                "degraded": False,
                "version": version,
                "items": await items_out(request, version, picks + fill),
            }
        )

    @app.get(
        "/recently-viewed/{user_id}",
        response_model=ItemList,
        tags=["storefront"],
        summary="Items the visitor viewed lately",
    )
    async def recently_viewed_items(request: Request, user_id: UserP, n: N = 10) -> ItemList:
        """Distinct items from the visitor's live view events (`POST /events`), newest first."""
        version, _, live_raw = await fetch_raw(request, user_id)
        return ItemList(
            source="recently_viewed",
            version=version,
            items=await items_out(request, version, recently_viewed(live_raw, n)),
        )

    @app.get(
        "/bestsellers", response_model=ItemList, tags=["storefront"], summary="Bestsellers, overall or per category"
    )
    async def bestsellers(request: Request, n: N = 10, category: CategoryQ = None) -> ItemList:
        """Most bought items over the recent window (distinct buyers)."""
        version, (best,) = await fetch(request, Keys.best(category))
        if best is None:
            raise HTTPException(404, f"Unknown category '{category}'.")
        return ItemList(source="bestsellers", version=version, items=await items_out(request, version, best[:n]))

    @app.get("/categories", response_model=list[str], tags=["storefront"], summary="Categories that have bestsellers")
    async def categories(request: Request) -> list[str]:
        _, (cats,) = await fetch(request, Keys.CATEGORIES)
        return cats or []

    @app.get("/new-arrivals", response_model=ItemList, tags=["storefront"], summary="New arrivals")
    async def new_arrivals(request: Request, n: N = 10, user_id: OptUserQ = None) -> ItemList:
        """Items first seen within the new-arrival window, ranked by early traction. With a known `user_id`, arrivals
        in the categories of the visitor's personal picks come first (`source` = `new_arrivals+personal`)."""
        suffixes = [Keys.NEW] + ([Keys.user(user_id), Keys.customer(user_id)] if user_id else [])
        version, values = await fetch(request, *suffixes)
        fresh, personal = values[0] or [], None
        if user_id:
            personal, _ = await computed(request, version, values[1], [], values[2])
        source = "new_arrivals"
        if personal and fresh:
            meta = await reader(request).item_metadata(version, [r[0] for r in personal[:20]] + [r[0] for r in fresh])
            liked = [(meta.get(r[0]) or {}).get("category") for r in personal[:20]]
            rank = {c: i for i, c in reversed(list(enumerate(liked))) if c is not None}
            fresh = sorted(fresh, key=lambda r: rank.get((meta.get(r[0]) or {}).get("category"), len(rank)))
            source = "new_arrivals+personal"
        return ItemList(source=source, version=version, items=await items_out(request, version, fresh[:n]))

    @app.get(
        "/similar/{item_id}",
        response_model=ItemList,
        tags=["storefront"],
        summary="Items similar to an item",
        responses={404: {"description": "The item is unknown to the published model."}},
    )
    async def similar(request: Request, item_id: ItemP, n: N = 10) -> ItemList:
        """Items whose learned factors are closest to this item's (people who like one tend to like the other)."""
        version, (sims,) = await fetch(request, Keys.similar(item_id))
        if sims is None:
            raise HTTPException(404, f"Unknown item '{item_id}'.")
        return ItemList(source="similar", version=version, items=await items_out(request, version, sims[:n]))

    def strategy_picks(
        seg: dict | None, picks: list[Any], personal: list[Any] | None, fresh: list[Any], best: list[Any]
    ) -> tuple[str, list[Any]]:
        """Apply the customer's segment strategy (see recommender.marketing.rfm.SEGMENTS) to choose their e-mail list."""
        strategy = SEGMENTS[seg["segment"]].strategy if seg else "due_again"
        if strategy == "new_arrivals" and fresh:
            return strategy, [{"item_id": i, "score": sc, "reason": "new_arrival", "due": None} for i, sc in fresh]
        if strategy == "bestsellers" and best:
            return strategy, [{"item_id": i, "score": sc, "reason": "bestseller", "due": None} for i, sc in best]
        if strategy == "personal" and personal:
            return strategy, [
                {"item_id": i, "score": sc, "reason": "goes_with_your_purchases", "due": None} for i, sc in personal
            ]
        return "due_again", picks  # the next-purchase list already puts items due again first

    @app.get(
        "/next-purchase/{user_id}",
        response_model=NextPurchase,
        tags=["e-mail"],
        summary="Next likely purchases of a customer",
        responses={404: {"description": "The customer has no purchase history in the published version."}},
    )
    async def next_purchase(
        request: Request, user_id: UserP, n: N = 10, strategy: Strategy = "default"
    ) -> NextPurchase:
        """Items the customer is due to buy again (with the expected date), then new items that go with what they buy.
        With `strategy=segment`, the list follows the customer's RFM segment strategy (e.g. new arrivals for loyal
        customers, items due again for those about to sleep; see `GET /customers/{user_id}/segment`)."""
        if strategy == "default":
            version, (picks, customer) = await fetch(request, Keys.next(user_id), Keys.customer(user_id))
            _, picks = await computed(request, version, [], picks, customer)
            segment = None
        else:
            version, (picks, seg, personal, fresh, best, customer) = await fetch(
                request,
                Keys.next(user_id),
                Keys.segment(user_id),
                Keys.user(user_id),
                Keys.NEW,
                Keys.best(None),
                Keys.customer(user_id),
            )
            personal, picks = await computed(request, version, personal, picks, customer)
        if picks is None:
            raise HTTPException(404, f"Customer '{user_id}' has no purchase history.")
        if strategy == "segment":
            segment = seg["segment"] if seg else None
            strategy, picks = strategy_picks(seg, picks, personal, fresh or [], best or [])
        items = await items_out(request, version, picks[:n])
        return NextPurchase(version=version, user_id=user_id, strategy=strategy, segment=segment, items=items)

    async def fill_computed(request: Request, version: str, rows: list[Any], width: int, personal_too: bool) -> None:
        """Batch rows (next, customer, [segment, personal] per customer): next-purchase lists (and personal lists)
        computed on request, in one top-k call, for customers the job did not precompute."""
        wanted = [k for k in range(0, len(rows), width) if rows[k] is None and rows[k + 1] is not None]
        found = await request.app.state.sessions.customer_lists(version, [rows[k + 1] for k in wanted])
        for k, lists in zip(wanted, found):
            if lists is not None:
                rows[k] = lists[1]
                if personal_too and rows[k + 3] is None:
                    rows[k + 3] = lists[0]

    @app.post(
        "/next-purchase/batch",
        response_model=BatchResponse,
        tags=["e-mail"],
        summary=f"Next purchases for up to {MAX_BATCH} customers",
    )
    async def next_purchase_batch(request: Request, body: Annotated[BatchRequest, Body()]) -> Response:
        """One Redis round trip for the whole batch. Customers without purchase history are listed in `unknown`."""
        ids = list(dict.fromkeys(body.user_ids))
        by_segment = body.strategy == "segment"
        per_user = [Keys.next, Keys.customer] + ([Keys.segment, Keys.user] if by_segment else [])
        shared = [Keys.NEW, Keys.best(None)] if by_segment else []
        version, values = await fetch(request, *shared, *(key(u) for u in ids for key in per_user))
        fresh, best = (values[0] or [], values[1] or []) if by_segment else ([], [])
        rows = values[len(shared) :]
        await fill_computed(request, version, rows, len(per_user), by_segment)
        chosen: dict[str, list[Any]] = {}
        strategies: dict[str, str] = {}
        unknown: list[str] = []
        for k, user_id in enumerate(ids):
            picks = rows[k * len(per_user)]
            if picks is None:
                unknown.append(user_id)
                continue
            if by_segment:
                seg, personal = rows[k * len(per_user) + 2], rows[k * len(per_user) + 3]
                strategies[user_id], picks = strategy_picks(seg, picks, personal, fresh, best)
            chosen[user_id] = picks[: body.n]
        # Item metadata for the whole batch at once (at most one more round trip, none once cached).
        flat = await items_out(request, version, [p for picks in chosen.values() for p in picks])
        results: dict[str, list[dict[str, Any]]] = {}
        at = 0
        for user_id, picks in chosen.items():
            results[user_id] = flat[at : at + len(picks)]
            at += len(picks)
        return json_response(
            {
                "source": "next_purchase",
                "version": version,
                "results": results,
                "unknown": unknown,
                "strategies": strategies if by_segment else None,
            }
        )

    @app.get(
        "/customers/{user_id}/segment",
        response_model=CustomerSegment,
        tags=["marketing"],
        summary="RFM scores and segment of a customer",
        responses={404: {"description": "The customer has no purchase history in the published version."}},
    )
    async def customer_segment(request: Request, user_id: UserP) -> CustomerSegment:
        """Recency, frequency and monetary scores (1-5, 5 best), the named segment and its suggested action."""
        version, (seg,) = await fetch(request, Keys.segment(user_id))
        if seg is None:
            raise HTTPException(404, f"Customer '{user_id}' has no purchase history.")
        info = SEGMENTS[seg["segment"]]
        return CustomerSegment(
            version=version,
            user_id=user_id,
            **seg,
            label=info.label,
            description=info.description,
            action=info.action,
            strategy=info.strategy,
        )

    @app.get("/segments", response_model=Segments, tags=["marketing"], summary="Segment sizes and revenue")
    async def segments(request: Request) -> Segments:
        version, (summary,) = await fetch(request, Keys.SEGMENTS)
        return Segments(version=version, **(summary or {"monetary_unit": "currency", "segments": []}))

    @app.get("/kpis", response_model=Kpis, tags=["marketing"], summary="Repeat-sales KPIs per period")
    async def kpis(request: Request, period: Annotated[Period, Query(description="Period length.")] = "month") -> Kpis:
        """Active, new and returning customers, repeat-purchase rate, purchase frequency, average order value, revenue
        and the share from returning customers, historic and predicted customer value, per period."""
        version, (table,) = await fetch(request, Keys.kpis(period))
        table = table or {"monetary_unit": "currency", "rows": []}
        return Kpis(version=version, period=period, **table)

    @app.post(
        "/admin/rollback",
        response_model=Health,
        tags=["operations"],
        summary="Serve the previous version again",
        dependencies=[Depends(require_write_key)],
        responses={409: {"description": "There is no previous version."}},
    )
    async def admin_rollback(request: Request) -> Health:
        """Swap the current and previous published versions (a second call undoes the first). Needs the write key."""
        try:
            version = await reader(request).client.eval(ROLLBACK_SCRIPT, 2, keys.current, keys.previous)
        except redis.exceptions.ResponseError as exc:
            if "no previous version" not in str(exc):
                raise
            raise HTTPException(409, "There is no previous version to roll back to.") from None
        log.info("rollback", extra={"version": version.decode()})
        return Health(status="ok", version=version.decode())

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        return metrics.render()

    @app.get("/healthz", response_model=Health, tags=["operations"], summary="Process is up")
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Health,
        tags=["operations"],
        summary="Redis reachable and a version published",
        responses={503: {"model": Health}},
    )
    async def readyz(request: Request) -> Any:
        try:
            version, _ = await reader(request).fetch()
        except Exception as exc:  # any Redis failure means not ready
            return JSONResponse(
                Health(status="unavailable", detail=f"Redis unreachable: {type(exc).__name__}").model_dump(), 503
            )
        if version is None:
            return JSONResponse(Health(status="unavailable", detail="no published version").model_dump(), 503)
        return Health(status="ok", version=version)

    app.include_router(events_router)
    app.include_router(docs_router)
    app.include_router(dashboard_router)
    return app
