"""Live events: keyed, all-or-nothing batch ingestion into the live-event stream."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

import pyarrow as pa
from fastapi import APIRouter, Body, Depends
from fastapi.concurrency import run_in_threadpool

from api.deps import ReaderDep, SettingsDep
from api.errors import BatchTooLarge, InvalidEvents
from api.schemas import EventBatch, EventsAccepted
from api.security import require_write_key
from cache.live import ingest_async
from recommender.data.loading import ROW, validate_events

router = APIRouter(tags=["live events"])


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
    summary="Ingest a batch of live events",
    dependencies=[Depends(require_write_key)],
    responses={
        401: {"description": "Missing or wrong X-API-Key."},
        403: {"description": "Writing is disabled."},
        422: {"description": "Invalid events, each named by position, field and value; nothing stored."},
    },
)
async def ingest_events(
    reader: ReaderDep, settings: SettingsDep, batch: Annotated[EventBatch, Body()]
) -> EventsAccepted:
    """Validate the batch with the job's own rules and store it atomically in the live-event stream. The answer
    comes once Redis has the batch on disk (append-only file, `appendfsync always`). A batch with any bad event is
    refused whole, with every bad event named."""
    if len(batch.events) > settings.api.max_events_batch:
        raise BatchTooLarge(settings.api.max_events_batch, len(batch.events))
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    window = settings.time_window(now)  # no event from the future
    events, report = await run_in_threadpool(
        validate_events, _as_table(batch, now), "request", len(batch.events), window
    )
    if report.rows_bad:
        errors = [
            {"position": b.row - 1, "field": b.field, "value": b.value, "reason": b.reason} for b in report.sample
        ]
        raise InvalidEvents(len(batch.events), report.rows_bad, errors)
    extras = [{"rec_id": e.rec_id, "position": e.position} for e in batch.events]
    ids = await ingest_async(reader.client, reader.keys, events, extras)
    reader.live.note(events["user_id"].to_pylist())  # this worker knows at once; the others hear it announced
    return EventsAccepted(accepted=len(ids), ids=ids)
