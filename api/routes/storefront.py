"""Storefront: personal picks, bestsellers, categories, new arrivals, similar and recently viewed items.

These answer page views, the service's bulk traffic: handlers take the request and read the running service through
:func:`api.deps.services` instead of a ``Depends`` (which FastAPI resolves on every request, see :mod:`api.deps`)."""

from __future__ import annotations

import time
from typing import Annotated

import redis.exceptions
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.deps import services
from api.errors import UnknownCategory, UnknownItem
from api.experiments import tagged
from api.merchandising import ReasonedPairs, as_entries, new_item_entries, present
from api.params import CategoryQ, ExcludeQ, ItemP, N, OptUserQ, UserP, UserQ
from api.published import computed, fetch, fetch_live, json_response
from api.schemas import ItemList
from api.state import Services
from cache.keys import Keys
from cache.live import parse_user_events
from recommender.serving import policy
from recommender.serving.experiment import CONTROL

router = APIRouter(tags=["storefront"])


DiversityQ = Annotated[
    int | None, Query(ge=1, le=100, description="At most this many items of one category in the answer.")
]
WIDE = 100  # candidates kept for the merchandising controls to choose from (the stored lists' usual length)


@router.get("/recommend", response_model=ItemList, summary="Personal picks for a visitor")
async def recommend(
    request: Request,
    user_id: UserQ,
    n: N = 10,
    category: CategoryQ = None,
    exclude: ExcludeQ = None,
    diversity: DiversityQ = None,
) -> Response:
    """The visitor's personal picks. Events sent to `POST /events` count at once: a visitor the model does not
    know gets picks folded in from their live events (`session`), a known one gets them blended in
    (`personal+session`), items bought since the last run drop out when the job excludes bought items, and a
    visitor with nothing to go on gets bestsellers. With `category`, only items of that category; `exclude`
    leaves out items (e.g. the cart); `diversity=k` keeps at most k items per category. A list shorter than `n`
    after filtering is topped up with bestsellers. Merchandising rules and the live catalogue apply, and items the
    visitor was shown many times lately without a click move down (rotation)."""
    svc = services(request)  # the hot path: no dependency to resolve per request (see api.deps)
    skip = set(filter(None, exclude.split(","))) if exclude else set()
    try:
        version, (personal, best, customer), live_raw = await fetch_live(
            svc.reader, user_id, Keys.user(user_id), Keys.best(category), Keys.customer(user_id)
        )
    except redis.exceptions.RedisError:
        if (degraded := _degraded(svc, user_id, category, skip, n)) is None:
            raise
        return degraded
    chosen, rec_id = tagged(svc.settings, "recommend", version, user_id)
    if chosen == CONTROL:  # the control group gets the non-personal baseline
        personal = customer = None
        live_raw = []
    if personal is None and customer is not None:
        personal, _ = await computed(svc.sessions, version, None, None, customer)
    svc.metrics.lookup("personal", personal is not None)
    if category is not None and best is None:
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
    await svc.merch.current()
    generation, valid_until = svc.merch.generation, svc.merch.valid_until(time.time())
    wide = n if svc.merch.idle and diversity is None and not live_raw else max(n, WIDE)
    answer = policy.recommendation(candidates, wide, lambda: best, category, metadata)
    items = await present(
        svc.merch,
        version,
        "recommend",
        _with_reasons(answer, personal),
        n,
        diversity,
        parse_user_events(live_raw) if live_raw else (),
    )
    return svc.answers.respond(
        request.scope,
        {"source": answer.source, "degraded": False, "version": version, "items": items},
        kind="recommend",
        version=version,
        variant=chosen,
        rec_id=rec_id,
        keep=not live_raw,  # live events (and the rotation they drive) make an answer of the moment
        generation=generation,
        valid_until=valid_until,
        user_id=user_id,
        lookups=(("personal", personal is not None),),
    )


def _degraded(svc: Services, user_id: str, category: str | None, skip: set[str], n: int) -> Response | None:
    """With Redis out of reach: the bestsellers the worker last saw (of ``category``), marked degraded, or None when
    it has none to give."""
    saved = svc.fallback.get(category)
    if saved is None:
        return None
    svc.metrics.fallbacks.labels("/recommend").inc()
    items = [{**r, "reason": "bestseller"} for r in saved if r["item_id"] not in skip][:n]
    version = svc.fallback.version or ""
    tags = _tags(svc, "recommend", version, user_id)
    return json_response({"source": "bestsellers", "degraded": True, "version": version, "items": items, **tags})


def _with_reasons(answer: policy.Recommendation, personal: list | None) -> ReasonedPairs:
    """The answer's entries with their reason: the visitor's own picks, picks from their live session, or the
    bestseller top-up (worked out only for the entries read)."""
    mine: set[str] | None = None

    def reason(k: int, item_id: str) -> str:
        nonlocal mine
        if k >= answer.picked:
            return "bestseller"
        if mine is None:
            mine = {r[0] for r in personal or ()}
        return "picked_for_you" if item_id in mine else "similar_to_what_you_viewed"

    return ReasonedPairs(answer.entries, reason)


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
    svc = services(request)
    version, _ = await fetch(svc.reader)
    live_raw = await svc.reader.live_events(user_id)
    entries = as_entries(policy.recently_viewed(parse_user_events(live_raw), WIDE), "recently_viewed")
    items = await present(svc.merch, version, "recently_viewed", entries, n)
    return ItemList(
        source="recently_viewed", version=version, items=items, **_tags(svc, "recently_viewed", version, user_id)
    )


@router.get("/bestsellers", response_model=ItemList, summary="Bestsellers, overall or per category")
async def bestsellers(request: Request, n: N = 10, category: CategoryQ = None) -> ItemList:
    """Most bought items over the recent window (distinct buyers)."""
    svc = services(request)
    version, (best,) = await fetch(svc.reader, Keys.best(category))
    if best is None:
        raise UnknownCategory(category)
    items = await present(svc.merch, version, "bestsellers", as_entries(best, "bestseller"), n)
    return ItemList(source="bestsellers", version=version, items=items, **_tags(svc, "bestsellers", version, None))


@router.get("/categories", response_model=list[str], summary="Categories that have bestsellers")
async def categories(request: Request) -> list[str]:
    reader = services(request).reader
    _, (cats,) = await fetch(reader, Keys.CATEGORIES)
    return cats or []


@router.get("/new-arrivals", response_model=ItemList, summary="New arrivals")
async def new_arrivals(request: Request, n: N = 10, user_id: OptUserQ = None) -> ItemList:
    """Items first seen within the new-arrival window, ranked by early traction; items added through `POST /items`
    since the last run come first. With a known `user_id`, arrivals in the categories of the visitor's personal
    picks come first (`source` = `new_arrivals+personal`)."""
    svc = services(request)
    suffixes = [Keys.NEW] + ([Keys.user(user_id), Keys.customer(user_id)] if user_id else [])
    version, values = await fetch(svc.reader, *suffixes)
    fresh, personal = values[0] or [], None
    tags = _tags(svc, "new_arrivals", version, user_id)
    if user_id and tags["variant"] != CONTROL:
        personal, _ = await computed(svc.sessions, version, values[1], [], values[2])
    source = "new_arrivals"
    if personal and fresh:
        meta = await svc.reader.item_metadata(version, [r[0] for r in personal[:20]] + [r[0] for r in fresh])
        fresh = policy.arrivals_for(fresh, personal, meta)
        source = "new_arrivals+personal"
    entries = as_entries(fresh, "new_arrival")
    state = await svc.merch.current()
    if state.items:
        info = await svc.sessions.manifest(version)
        days = info.get("params", {}).get("lists", {}).get("new_arrival_days", 30)
        added = [e for e in new_item_entries(state, days) if e["item_id"] not in {f["item_id"] for f in entries}]
        entries = added + entries
    items = await present(svc.merch, version, "new_arrivals", entries, n)
    return ItemList(source=source, version=version, items=items, **tags)


@router.get(
    "/similar/{item_id}",
    response_model=ItemList,
    summary="Items similar to an item",
    responses={404: {"description": "The item is unknown to the published model, or unavailable."}},
)
async def similar(request: Request, item_id: ItemP, n: N = 10) -> ItemList:
    """Items whose learned factors are closest to this item's (people who like one tend to like the other). The job
    stores the lists of items with recent events; any other item the model knows gets the same list computed on
    request from the published item factors. An item added through `POST /items` since the last run gets the
    bestsellers of its category (`same_category`)."""
    svc = services(request)
    version, (sims,) = await fetch(svc.reader, Keys.similar(item_id))
    state = await svc.merch.current()
    if item_id in state.unavailable:
        raise UnknownItem(item_id)
    if sims is None:
        sims = await svc.sessions.similar(version, item_id)
    entries = as_entries(sims, "similar_item") if sims is not None else await _same_category(svc, item_id)
    if entries is None:
        raise UnknownItem(item_id)
    items = await present(svc.merch, version, "similar", [e for e in entries if e["item_id"] != item_id], n)
    return ItemList(source="similar", version=version, items=items, **_tags(svc, "similar", version, None))


def _tags(svc: Services, kind: str, version: str, user_id: str | None) -> dict[str, str]:
    chosen, rec_id = tagged(svc.settings, kind, version, user_id)
    return {"variant": chosen, "rec_id": rec_id}


async def _same_category(svc: Services, item_id: str) -> list[dict] | None:
    """Bestsellers of a live-added item's category (None when the item or its category is unknown)."""
    category = (svc.merch.state.items.get(item_id) or {}).get("category")
    if category is None:
        return None
    _, (best,) = await fetch(svc.reader, Keys.best(category))
    return as_entries(best or [], "same_category")
