"""Live events: keyed batch ingestion and the visitor's recently viewed items."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

import pyarrow as pa
from fastapi import APIRouter, Body, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from api.schemas import EventBatch, EventsAccepted
from api.security import require_write_key
from cache.live import parse_user_events, queue_ingest
from recommender.data.loading import ROW, validate_events

router = APIRouter()


def _as_table(batch: EventBatch, now: datetime) -> pa.Table:
    cols: dict[str, list[str | None]] = {
        k: [] for k in ("user_id", "item_id", "event_type", "timestamp", "quantity", "price", "order_id")
    }
    for event in batch.events:
        for name in cols:
            value = getattr(event, name)
            if name == "timestamp" and value is None:
                value = now.strftime("%Y-%m-%d %H:%M:%S.%f")
            cols[name].append(None if value is None else str(value))
    table = pa.table({k: pa.array(v, pa.string()) for k, v in cols.items()})
    return table.append_column(ROW, pa.array(range(1, table.num_rows + 1), pa.int64()))


@router.post(
    "/events",
    response_model=EventsAccepted,
    tags=["live events"],
    summary="Ingest a batch of live events",
    dependencies=[Depends(require_write_key)],
    responses={
        401: {"description": "Missing or wrong X-API-Key."},
        403: {"description": "Writing is disabled."},
        422: {"description": "Invalid events, each named by position, field and value; nothing stored."},
    },
)
async def ingest_events(request: Request, batch: Annotated[EventBatch, Body()]) -> EventsAccepted:
    """Validate the batch with the job's own rules and store it atomically in the live-event stream. The answer
    comes once Redis has the batch on disk (append-only file, `appendfsync always`). A batch with any bad event is
    refused whole, with every bad event named."""
    state = request.app.state
    limit = state.settings.max_events_batch
    if len(batch.events) > limit:
        raise HTTPException(
            413, f"A batch holds at most {limit} events (RECO_MAX_EVENTS_BATCH); got {len(batch.events)}."
        )
    table = _as_table(batch, datetime.now(timezone.utc).replace(tzinfo=None))
    events, report = await run_in_threadpool(validate_events, table, "request", len(batch.events))
    if report.rows_bad:
        errors = [
            {"position": b.row - 1, "field": b.field, "value": b.value, "reason": b.reason} for b in report.sample
        ]
        first = errors[0]
        raise HTTPException(
            422,
            {
                "message": f"{report.rows_bad} of {len(batch.events)} events are invalid, nothing was stored; first: "
                f"event {first['position']} {first['field']}={first['value']!r} {first['reason']}.",
                "errors": errors,
            },
        )
    pipe = state.reader.client.pipeline(transaction=True)
    n = queue_ingest(pipe, state.keys, events)
    replies = await pipe.execute()
    return EventsAccepted(accepted=n, ids=[r.decode() for r in replies[:n]])


def recently_viewed(live_raw: list[bytes], n: int) -> list[list]:
    """Distinct viewed items, newest first, as [item_id, score] with score 1/(rank+1)."""
    seen: list[str] = []
    for kind, item, _ in parse_user_events(live_raw):
        if kind == "view" and item not in seen:
            seen.append(item)
            if len(seen) == n:
                break
    return [[item, round(1.0 / (rank + 1), 5)] for rank, item in enumerate(seen)]
