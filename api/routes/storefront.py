"""Storefront: personal picks, bestsellers, categories, new arrivals, similar and recently viewed items.

These answer page views, the service's bulk traffic: handlers take the request and read the running service through
:func:`api.deps.services` instead of a ``Depends`` (which FastAPI resolves on every request, see :mod:`api.deps`)."""

from __future__ import annotations

import redis.exceptions
from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import services
from api.errors import UnknownCategory, UnknownItem
from api.params import CategoryQ, ExcludeQ, ItemP, N, OptUserQ, UserP, UserQ
from api.published import computed, fetch, fetch_raw, json_response, with_metadata
from api.schemas import ItemList
from api.state import Services
from cache.keys import Keys
from cache.live import parse_user_events
from cache.reader import decode
from recommender.serving import policy

router = APIRouter(tags=["storefront"])


@router.get("/recommend", response_model=ItemList, summary="Personal picks for a visitor")
async def recommend(
    request: Request, user_id: UserQ, n: N = 10, category: CategoryQ = None, exclude: ExcludeQ = None
) -> Response:
    """The visitor's personal picks. Events sent to `POST /events` count at once: a visitor the model does not
    know gets picks folded in from their live events (`session`), a known one gets them blended in
    (`personal+session`), items bought since the last run drop out when the job excludes bought items, and a
    visitor with nothing to go on gets bestsellers. With `category`, only items of that category; `exclude`
    leaves out items (e.g. the cart). A list shorter than `n` after filtering is topped up with bestsellers."""
    svc = services(request)
    skip = set(filter(None, exclude.split(","))) if exclude else set()
    try:
        # Bestsellers are decoded only when needed (a category check or a list to top up): most visitors never do.
        version, (personal_raw, best_raw, customer_raw), live_raw = await fetch_raw(
            svc.reader, user_id, Keys.user(user_id), Keys.best(category), Keys.customer(user_id)
        )
    except redis.exceptions.RedisError:
        saved = svc.fallback.get(category)
        if saved is None:
            raise
        svc.metrics.fallbacks.labels("/recommend").inc()
        items = [r for r in saved if r["item_id"] not in skip][:n]
        return json_response(
            {"source": "bestsellers", "degraded": True, "version": svc.fallback.version, "items": items}
        )
    personal = await svc.reader.decode(version, personal_raw)
    if personal is None and customer_raw is not None:
        personal, _ = await computed(svc.sessions, version, None, None, customer_raw)
    svc.metrics.lookup("personal", personal is not None)
    if category is not None and best_raw is None:
        raise UnknownCategory(category)
    if live_raw:
        candidates = await _with_live_session(svc, version, personal, skip, live_raw)
    else:
        candidates = policy.visitor_candidates(personal, skip)
    metadata = (
        await svc.reader.item_metadata(version, [r[0] for r in candidates.ranked])
        if category is not None and candidates.ranked
        else None
    )
    answer = policy.recommendation(candidates, n, lambda: decode(best_raw), category, metadata)
    return json_response(
        {
            "source": answer.source,
            "degraded": False,
            "version": version,
            "items": await with_metadata(svc.reader, version, answer.entries),
        }
    )


async def _with_live_session(
    svc: Services, version: str, personal: list | None, skip: set[str], live_raw: list[bytes]
) -> policy.Candidates:
    """The visitor's candidates with their live events: loads the version's session model and list settings."""
    info = await svc.sessions.manifest(version)
    exclude_purchased = info.get("params", {}).get("lists", {}).get("exclude_purchased", True)
    model = await svc.sessions.get(version)
    return policy.visitor_candidates(personal, skip, parse_user_events(live_raw), model, exclude_purchased)


@router.get("/recently-viewed/{user_id}", response_model=ItemList, summary="Items the visitor viewed lately")
async def recently_viewed_items(request: Request, user_id: UserP, n: N = 10) -> ItemList:
    """Distinct items from the visitor's live view events (`POST /events`), newest first."""
    reader = services(request).reader
    version, _, live_raw = await fetch_raw(reader, user_id)
    entries = policy.recently_viewed(parse_user_events(live_raw), n)
    return ItemList(source="recently_viewed", version=version, items=await with_metadata(reader, version, entries))


@router.get("/bestsellers", response_model=ItemList, summary="Bestsellers, overall or per category")
async def bestsellers(request: Request, n: N = 10, category: CategoryQ = None) -> ItemList:
    """Most bought items over the recent window (distinct buyers)."""
    reader = services(request).reader
    version, (best,) = await fetch(reader, Keys.best(category))
    if best is None:
        raise UnknownCategory(category)
    return ItemList(source="bestsellers", version=version, items=await with_metadata(reader, version, best[:n]))


@router.get("/categories", response_model=list[str], summary="Categories that have bestsellers")
async def categories(request: Request) -> list[str]:
    reader = services(request).reader
    _, (cats,) = await fetch(reader, Keys.CATEGORIES)
    return cats or []


@router.get("/new-arrivals", response_model=ItemList, summary="New arrivals")
async def new_arrivals(request: Request, n: N = 10, user_id: OptUserQ = None) -> ItemList:
    """Items first seen within the new-arrival window, ranked by early traction. With a known `user_id`, arrivals
    in the categories of the visitor's personal picks come first (`source` = `new_arrivals+personal`)."""
    svc = services(request)
    suffixes = [Keys.NEW] + ([Keys.user(user_id), Keys.customer(user_id)] if user_id else [])
    version, values = await fetch(svc.reader, *suffixes)
    fresh, personal = values[0] or [], None
    if user_id:
        personal, _ = await computed(svc.sessions, version, values[1], [], values[2])
    source = "new_arrivals"
    if personal and fresh:
        meta = await svc.reader.item_metadata(version, [r[0] for r in personal[:20]] + [r[0] for r in fresh])
        fresh = policy.arrivals_for(fresh, personal, meta)
        source = "new_arrivals+personal"
    return ItemList(source=source, version=version, items=await with_metadata(svc.reader, version, fresh[:n]))


@router.get(
    "/similar/{item_id}",
    response_model=ItemList,
    summary="Items similar to an item",
    responses={404: {"description": "The item is unknown to the published model."}},
)
async def similar(request: Request, item_id: ItemP, n: N = 10) -> ItemList:
    """Items whose learned factors are closest to this item's (people who like one tend to like the other)."""
    reader = services(request).reader
    version, (sims,) = await fetch(reader, Keys.similar(item_id))
    if sims is None:
        raise UnknownItem(item_id)
    return ItemList(source="similar", version=version, items=await with_metadata(reader, version, sims[:n]))
