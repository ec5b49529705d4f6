"""Live events in Redis: atomic batch ingestion, each visitor's latest events, and the job's exactly-once intake.

Ingestion writes a whole batch in one MULTI/EXEC: every event goes to the stream ``<prefix>:live:events`` (the
durable log the nightly job reads) and to the visitor's short list ``<prefix>:live:user:<id>`` (what the API uses
at once). With the append-only file on and ``appendfsync always`` the reply comes only after the batch is on disk.

The job takes live events exactly once: it reads the stream after the last archived entry id, writes those entries
to an archive Parquet file named by their id range (the durable record the job trains on from then on), records
the last id, and trims the stream up to it after publishing. A run killed in between is repaired by the next one:
the archive files themselves say which ids are already taken, so nothing is read twice or lost.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import redis
import redis.asyncio as aioredis

from cache.keys import Keys
from recommender.data.schema import EVENT_SCHEMA, FEEDBACK_TYPES

USER_EVENTS_KEPT = 200
USER_EVENTS_TTL = 30 * 86400
FIELDS = ("user_id", "item_id", "event_type", "timestamp", "quantity", "price", "order_id")
EXTRAS = ("rec_id", "position")
"""Feedback fields kept in the stream and its archive beside the event (not part of EVENT_SCHEMA)."""


def _epoch_ms(ts: datetime) -> int:
    return int(ts.replace(tzinfo=timezone.utc).timestamp() * 1000)


def queue_ingest(pipe: Any, keys: Keys, events: pa.Table, extras: list[dict[str, Any]] | None = None) -> int:
    """Queue the commands storing validated events (EVENT_SCHEMA) on a transactional pipeline (sync or async).

    Executing the pipeline stores the whole batch or nothing (MULTI/EXEC). Returns the number of XADD replies,
    which come first in the pipeline's results, in event order. ``extras`` (one dict per event, in order) adds
    ``rec_id`` and ``position`` of feedback to the stream entries.
    """
    users: set[str] = set()
    rows = events.to_pylist()
    for k, row in enumerate(rows):
        fields = {k: ("" if row[k] is None else str(row[k])) for k in FIELDS}
        fields["timestamp"] = str(_epoch_ms(row["timestamp"]))
        fields.update({name: str(v) for name, v in (extras[k] if extras else {}).items() if v is not None})
        pipe.xadd(keys.live_stream, fields)
    for row in rows:
        pipe.lpush(
            keys.live_user(row["user_id"]), f"{row['event_type']}|{row['item_id']}|{_epoch_ms(row['timestamp'])}"
        )
        users.add(row["user_id"])
    for user in sorted(users):
        pipe.ltrim(keys.live_user(user), 0, USER_EVENTS_KEPT - 1)
        pipe.expire(keys.live_user(user), USER_EVENTS_TTL)
    return len(rows)


def ingest(client: redis.Redis, keys: Keys, events: pa.Table) -> list[str]:
    """Store validated events atomically; returns their stream ids."""
    pipe = client.pipeline(transaction=True)
    n = queue_ingest(pipe, keys, events)
    return [r.decode() for r in pipe.execute()[:n]]


async def ingest_async(
    client: aioredis.Redis, keys: Keys, events: pa.Table, extras: list[dict[str, Any]] | None = None
) -> list[str]:
    """:func:`ingest` on an asyncio client (the API's)."""
    pipe = client.pipeline(transaction=True)
    n = queue_ingest(pipe, keys, events, extras)
    return [r.decode() for r in (await pipe.execute())[:n]]


def parse_user_events(raw: list[bytes] | None) -> list[tuple[str, str, datetime]]:
    """A visitor's live list (newest first) as (event_type, item_id, time)."""
    out = []
    for entry in raw or []:
        kind, item, ms = (entry.decode() if isinstance(entry, bytes) else entry).split("|")
        out.append((kind, item, datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).replace(tzinfo=None)))
    return out


def _id_key(stream_id: str) -> tuple[int, int]:
    ms, seq = stream_id.split("-")
    return int(ms), int(seq)


def _archived_upto(client: redis.Redis, keys: Keys, archive_dir: Path) -> str:
    marks = [p.stem.split("_")[1] for p in archive_dir.glob("live-*_*.parquet")]
    pointer = client.get(keys.live_archived)
    if pointer:
        marks.append(pointer.decode())
    return max(marks, key=_id_key) if marks else "0-0"


def _to_table(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> pa.Table:
    cols: dict[str, list[Any]] = {k: [] for k in FIELDS + EXTRAS}
    for _, fields in entries:
        row = {k.decode(): v.decode() for k, v in fields.items()}
        cols["user_id"].append(row["user_id"])
        cols["item_id"].append(row["item_id"])
        cols["event_type"].append(row["event_type"])
        cols["timestamp"].append(
            datetime.fromtimestamp(int(row["timestamp"]) / 1000, tz=timezone.utc).replace(tzinfo=None)
        )
        cols["quantity"].append(float(row["quantity"]) if row.get("quantity") else 1.0)
        cols["price"].append(float(row["price"]) if row.get("price") else None)
        cols["order_id"].append(row.get("order_id") or None)
        cols["rec_id"].append(row.get("rec_id") or None)
        cols["position"].append(int(row["position"]) if row.get("position") else None)
    extra = [pa.field("rec_id", pa.string()), pa.field("position", pa.int32())]
    return pa.table(cols, schema=pa.schema(list(EVENT_SCHEMA) + extra))


def take_live_events(client: redis.Redis, keys: Keys, archive_dir: Path, page: int = 50_000) -> tuple[pa.Table, str]:
    """Archive the stream entries not yet archived and return every archived live event plus the last id taken."""
    archive_dir.mkdir(parents=True, exist_ok=True)
    upto = _archived_upto(client, keys, archive_dir)
    entries: list[tuple[bytes, dict[bytes, bytes]]] = []
    start = f"({upto}"
    while True:
        chunk = client.xrange(keys.live_stream, min=start, max="+", count=page)
        if not chunk:
            break
        entries.extend(chunk)
        start = f"({chunk[-1][0].decode()}"
    if entries:
        first, last = entries[0][0].decode(), entries[-1][0].decode()
        path = archive_dir / f"live-{first}_{last}.parquet"
        tmp = path.with_suffix(".tmp")
        pq.write_table(_to_table(entries), tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        tmp.replace(path)  # atomic: a file with this name is always complete
        client.set(keys.live_archived, last)
        upto = last
    files = sorted(archive_dir.glob("live-*_*.parquet"))
    table = (
        pa.concat_tables([pq.read_table(f, columns=EVENT_SCHEMA.names).cast(EVENT_SCHEMA) for f in files])
        if files
        else EVENT_SCHEMA.empty_table()
    )
    return table, upto


FEEDBACK_SCHEMA = pa.schema(
    [EVENT_SCHEMA.field(n) for n in ("user_id", "item_id", "event_type", "timestamp")]
    + [pa.field("rec_id", pa.string()), pa.field("position", pa.int32())]
)


def with_feedback_extras(table: pa.Table) -> pa.Table:
    """Events as FEEDBACK_SCHEMA rows (``rec_id`` and ``position`` empty where the table has none)."""
    for name in EXTRAS:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, FEEDBACK_SCHEMA.field(name).type))
    return table.select(FEEDBACK_SCHEMA.names).cast(FEEDBACK_SCHEMA)


def archived_feedback(archive_dir: Path) -> pa.Table:
    """Impressions and clicks of the live-event archive, with their ``rec_id`` and ``position``."""
    tables = []
    for f in sorted(archive_dir.glob("live-*_*.parquet")):
        t = with_feedback_extras(pq.read_table(f))
        tables.append(t.filter(pc.is_in(t["event_type"], pa.array(FEEDBACK_TYPES))))
    return pa.concat_tables(tables) if tables else FEEDBACK_SCHEMA.empty_table()


def trim_taken(client: redis.Redis, keys: Keys, upto: str) -> None:
    """Drop stream entries up to and including ``upto`` (they are archived)."""
    if upto != "0-0":
        ms, seq = _id_key(upto)
        client.xtrim(keys.live_stream, minid=f"{ms}-{seq + 1}", approximate=False)
