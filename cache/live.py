"""Live events in Redis: atomic batch ingestion, each visitor's latest events, and the job's exactly-once intake.

A batch goes to one of LIVE_SHARDS streams ``<prefix>:live:events:{<prefix>:<shard>}`` (the durable log the nightly
job reads; sharded so that on a Redis Cluster no node takes every write) through one Lua script, so the job sees all
of it or none. Each visitor's short list ``<prefix>:live:user:{<id>}`` (what the API uses at once) is updated with
it, the visitor is noted in the live index ``{<prefix>}:live:active`` and announced on the live channel, so API
workers know without asking Redis which visitors have live events. On one server all of that is one MULTI/EXEC; on a
cluster, where a transaction cannot span slots, the stream script comes first (the durable record) and the rest
follows in one pipelined round trip. With the append-only file on and ``appendfsync always`` the reply comes only
after the batch is on disk.

The job takes live events exactly once, shard by shard: it reads each stream after its last archived entry id,
writes those entries to an archive Parquet file named by shard and id range (the durable record the job trains on
from then on), records the last id, and trims the stream up to it after publishing. A run killed in between is
repaired by the next one: the archive files themselves say which ids are already taken, so nothing is read twice or
lost. Archive files of the single-stream layout (``live-<first>_<last>.parquet``) are still read.
"""

from __future__ import annotations

import os
import random
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import redis
import redis.asyncio as aioredis

from cache.keys import LIVE_SHARDS, Keys
from recommender.data.schema import EVENT_SCHEMA, FEEDBACK_TYPES

USER_EVENTS_KEPT = 200
USER_EVENTS_TTL = 30 * 86400
FIELDS = ("user_id", "item_id", "event_type", "timestamp", "quantity", "price", "order_id")
EXTRAS = ("rec_id", "position")
"""Feedback fields kept in the stream and its archive beside the event (not part of EVENT_SCHEMA)."""
# Visitors stay in the live index while their latest batch is younger than the previous version's intake minus this
# (clocks of API hosts and the job's host may differ a little).
INDEX_MARGIN_MS = 60_000


_APPEND = """
local ids, width = {}, tonumber(ARGV[1])
for i = 2, #ARGV, width do ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', unpack(ARGV, i, i + width - 1)) end
return ids
"""
_NOTE_VISITORS = """
for i = 3, #ARGV do redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i]) end
redis.call('PUBLISH', ARGV[2], table.concat(ARGV, ' ', 3))
"""


def _epoch_ms(ts: datetime) -> int:
    return int(ts.replace(tzinfo=timezone.utc).timestamp() * 1000)


def queue_stream(
    pipe: Any, keys: Keys, rows: list[dict[str, Any]], shard: int, extras: list[dict[str, Any]] | None = None
) -> None:
    """Queue one script that appends a batch (rows of EVENT_SCHEMA) to one stream shard; its reply is the stream ids.
    A script because it is atomic on a cluster too, where a MULTI/EXEC is not to be had from redis-py's asyncio
    client. ``extras`` (one dict per event, in order) adds ``rec_id`` and ``position`` of feedback (empty when
    absent)."""
    args: list[str] = []
    for k, row in enumerate(rows):
        extra = extras[k] if extras else {}
        for name in FIELDS:
            value = _epoch_ms(row[name]) if name == "timestamp" else row[name]
            args += [name, "" if value is None else str(value)]
        for name in EXTRAS:
            args += [name, "" if extra.get(name) is None else str(extra[name])]
    pipe.execute_command("EVAL", _APPEND, 1, keys.live_stream(shard), 2 * len(FIELDS + EXTRAS), *args)


def queue_visitors(pipe: Any, keys: Keys, rows: list[dict[str, Any]], now_ms: int) -> list[str]:
    """Queue the updates of each visitor's live list, the live index and the announcement; returns the visitors."""
    users: list[str] = []
    for row in rows:
        pipe.lpush(
            keys.live_user(row["user_id"]), f"{row['event_type']}|{row['item_id']}|{_epoch_ms(row['timestamp'])}"
        )
        if row["user_id"] not in users:
            users.append(row["user_id"])
    for user in users:
        pipe.ltrim(keys.live_user(user), 0, USER_EVENTS_KEPT - 1)
        pipe.expire(keys.live_user(user), USER_EVENTS_TTL)
    # One script for the index and the announcement: it names the index as its key, so a cluster pipeline (which
    # refuses a bare PUBLISH) routes it to the index's node; PUBLISH from there reaches every node.
    pipe.execute_command("EVAL", _NOTE_VISITORS, 1, keys.live_active, now_ms, keys.live_channel, *users)
    return users


def ingest_plan(client: Any, keys: Keys, events: pa.Table, extras: list[dict[str, Any]] | None = None) -> list[Any]:
    """The pipelines that store validated events (EVENT_SCHEMA), in order (sync or asyncio clients): one MULTI/EXEC
    on one server; on a cluster the stream script alone, then one pipeline for the visitors. The first reply of the
    first pipeline is the list of stream ids, in event order."""
    from cache.server import is_cluster

    rows = events.to_pylist()
    shard = random.randrange(LIVE_SHARDS)
    now_ms = int(time.time() * 1000)
    cluster = is_cluster(client)
    first = client.pipeline(transaction=not cluster)
    queue_stream(first, keys, rows, shard, extras)
    if not cluster:
        queue_visitors(first, keys, rows, now_ms)
        return [first]
    second = client.pipeline(transaction=False)
    queue_visitors(second, keys, rows, now_ms)
    return [first, second]


def ingest(client: redis.Redis, keys: Keys, events: pa.Table) -> list[str]:
    """Store validated events atomically; returns their stream ids."""
    replies = [pipe.execute() for pipe in ingest_plan(client, keys, events)]
    return [r.decode() for r in replies[0][0]]


async def ingest_async(
    client: aioredis.Redis, keys: Keys, events: pa.Table, extras: list[dict[str, Any]] | None = None
) -> list[str]:
    """:func:`ingest` on an asyncio client (the API's); ``extras`` as for :func:`queue_stream`."""
    replies = [await pipe.execute() for pipe in ingest_plan(client, keys, events, extras)]
    return [r.decode() for r in replies[0][0]]


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


def _archived_upto(client: redis.Redis, keys: Keys, archive_dir: Path, shard: int) -> str:
    marks = [p.stem.split("_")[1] for p in archive_dir.glob(f"live-s{shard}-*_*.parquet")]
    pointer = client.hget(keys.live_archived, str(shard))
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


def _take_shard(client: redis.Redis, keys: Keys, archive_dir: Path, shard: int, page: int) -> str:
    """Archive one stream's entries not yet archived; returns the last id taken from it ("0-0" if none ever)."""
    upto = _archived_upto(client, keys, archive_dir, shard)
    entries: list[tuple[bytes, dict[bytes, bytes]]] = []
    start = f"({upto}"
    while True:
        chunk = client.xrange(keys.live_stream(shard), min=start, max="+", count=page)
        if not chunk:
            break
        entries.extend(chunk)
        start = f"({chunk[-1][0].decode()}"
    if entries:
        first, last = entries[0][0].decode(), entries[-1][0].decode()
        path = archive_dir / f"live-s{shard}-{first}_{last}.parquet"
        tmp = path.with_suffix(".tmp")
        pq.write_table(_to_table(entries), tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        tmp.replace(path)  # atomic: a file with this name is always complete
        client.hset(keys.live_archived, str(shard), last)
        upto = last
    return upto


def take_live_events(
    client: redis.Redis, keys: Keys, archive_dir: Path, page: int = 50_000
) -> tuple[pa.Table, dict[str, str]]:
    """Archive the stream entries not yet archived and return every archived live event plus, per shard, the last id
    taken."""
    archive_dir.mkdir(parents=True, exist_ok=True)
    upto = {str(shard): _take_shard(client, keys, archive_dir, shard, page) for shard in range(LIVE_SHARDS)}
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


def trim_taken(client: redis.Redis, keys: Keys, upto: dict[str, str]) -> None:
    """Drop stream entries up to and including each shard's ``upto`` (they are archived)."""
    for shard, last in upto.items():
        if last != "0-0":
            ms, seq = _id_key(last)
            client.xtrim(keys.live_stream(int(shard)), minid=f"{ms}-{seq + 1}", approximate=False)


def trim_index(client: redis.Redis, keys: Keys, taken_ms: int | None) -> int:
    """Forget, in the live index, visitors whose latest batch came before ``taken_ms`` (the intake of the version
    still kept for rollback, minus a margin): their events are in every version that can serve. Returns how many."""
    if taken_ms is None:
        return 0
    return client.zremrangebyscore(keys.live_active, "-inf", f"({taken_ms - INDEX_MARGIN_MS}")
