"""Reading the published version for an answer: the stored values (503 when nothing is published), item metadata
added to stored lists, and orjson answers for the hot paths."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response

from api.errors import NothingPublished
from api.session_models import SessionModels
from cache.reader import Reader


async def fetch_live(reader: Reader, live_user: str | None, *suffixes: str) -> tuple[str, list[Any], list[bytes]]:
    """The version this request serves, the decoded values of ``suffixes`` under it (None for missing keys; from the
    near cache when it has them) and ``live_user``'s live events when they may have some, with at most one call to
    Redis; :class:`NothingPublished` if there is no version."""
    version = await reader.version()
    if version is None:
        raise NothingPublished()
    values, live_raw = await reader.values_and_live(version, live_user, *suffixes)
    return version, values, live_raw


async def fetch(reader: Reader, *suffixes: str) -> tuple[str, list[Any]]:
    """The version this request serves and the decoded values of ``suffixes`` (None for missing keys)."""
    version, values, _ = await fetch_live(reader, None, *suffixes)
    return version, values


async def computed(
    sessions: SessionModels, version: str, personal: list[Any] | None, picks: list[Any] | None, customer: bytes | None
) -> tuple[list[Any] | None, list[Any] | None]:
    """Personal and next-purchase lists, computed on request from the customer's stored model row when the job
    did not precompute them (customers not active lately); stored lists are returned as they are."""
    if customer is None or (personal is not None and picks is not None):
        return personal, picks
    found = (await sessions.customer_lists(version, [customer]))[0]
    if found is None:
        return personal, picks
    return (personal if personal is not None else found[0]), (picks if picks is not None else found[1])


async def fill_computed(sessions: SessionModels, version: str, rows: list[Any], width: int, personal_too: bool) -> None:
    """Batch rows (next, customer, [segment, personal] per customer): next-purchase lists (and personal lists)
    computed on request, in one top-k call, for customers the job did not precompute."""
    wanted = [k for k in range(0, len(rows), width) if rows[k] is None and rows[k + 1] is not None]
    found = await sessions.customer_lists(version, [rows[k + 1] for k in wanted])
    for k, lists in zip(wanted, found):
        if lists is not None:
            rows[k] = lists[1]
            if personal_too and rows[k + 3] is None:
                rows[k + 3] = lists[0]


def json_response(content: dict[str, Any]) -> Response:
    """Hot paths answer with orjson bytes built here; their response_model still documents the shape."""
    return Response(orjson.dumps(content), media_type="application/json")
