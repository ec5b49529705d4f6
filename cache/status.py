"""What the operator sees of the cache: the published versions, the server's health and durability, live ingestion,
the log of the promotion gate's figures over the latest runs and the offline evaluation on record.

The job records (sync client); the API's dashboard reads (async client). Values are plain JSON-ready dicts.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis

from cache.keys import LIVE_SHARDS, Keys
from cache.server import durability_of, mget

QUALITY_LOG_SIZE = 50
"""Entries the quality log keeps (one per run of the job with the gate on, newest first)."""

INFO_FIELDS = (
    "redis_version",
    "redis_mode",
    "uptime_in_seconds",
    "used_memory",
    "used_memory_peak",
    "maxmemory",
    "maxmemory_policy",
    "connected_clients",
    "instantaneous_ops_per_sec",
    "keyspace_hits",
    "keyspace_misses",
    "aof_enabled",
    "aof_last_write_status",
    "rdb_last_bgsave_status",
    "rdb_changes_since_last_save",
    "rdb_last_save_time",
    "role",
)


def _loads(raw: bytes | None) -> Any:
    return orjson.loads(raw) if raw is not None else None


def record_quality(client: redis.Redis, keys: Keys, entry: dict[str, Any], keep: int = QUALITY_LOG_SIZE) -> None:
    """Add one run's gate figures to the quality log (newest first; the oldest beyond ``keep`` are dropped)."""
    pipe = client.pipeline(transaction=True)
    pipe.lpush(keys.quality_log, orjson.dumps(entry, option=orjson.OPT_SERIALIZE_NUMPY))
    pipe.ltrim(keys.quality_log, 0, keep - 1)
    pipe.execute()


def record_evaluation(client: redis.Redis, keys: Keys, doc: dict[str, Any]) -> None:
    """Keep the figures of the latest offline evaluation (``reco evaluate --publish``); replaces the previous ones."""
    client.set(keys.evaluation, orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS))


async def quality_log(client: aioredis.Redis, keys: Keys, n: int = QUALITY_LOG_SIZE) -> list[dict[str, Any]]:
    """The latest ``n`` entries of the quality log, newest first."""
    return [orjson.loads(raw) for raw in await client.lrange(keys.quality_log, 0, n - 1)]


async def evaluation(client: aioredis.Redis, keys: Keys) -> dict[str, Any] | None:
    return _loads(await client.get(keys.evaluation))


async def versions(client: aioredis.Redis, keys: Keys) -> dict[str, dict[str, Any] | None]:
    """The manifests of the current and the previous version (None where there is none)."""
    current, previous = await client.mget(keys.current, keys.previous)
    ids = [v.decode() if v else None for v in (current, previous)]
    names = [keys.key(v, Keys.MANIFEST) for v in ids if v]
    found = iter(await mget(client, names)) if names else iter(())
    manifests = [(_loads(next(found)) or {"version": v}) if v else None for v in ids]
    return {"current": manifests[0], "previous": manifests[1]}


async def server_info(client: aioredis.Redis) -> dict[str, Any]:
    """A few INFO fields (memory, uptime, persistence status, hit counts) and the durability of acknowledged writes."""
    info = await client.info()
    out: dict[str, Any] = {name: info.get(name) for name in INFO_FIELDS}
    try:
        out["durability"] = durability_of(await client.config_get("append*"))
    except redis.ResponseError:  # CONFIG is disabled on some managed servers
        out["durability"] = "unknown"
    return out


async def live_ingestion(client: aioredis.Redis, keys: Keys, minutes: int = 60, cap: int = 20_000) -> dict[str, Any]:
    """Live events per minute over the last ``minutes`` (read from the stream ids, which are arrival times in ms; at
    most ``cap`` entries are read, ``capped`` says when there were more), the stream's length and its newest entry."""
    seconds, micros = await client.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    since = now_ms - minutes * 60_000
    pipe = client.pipeline(transaction=False)
    for shard in range(LIVE_SHARDS):
        stream = keys.live_stream(shard)
        pipe.xlen(stream)
        pipe.xrevrange(stream, "+", "-", count=1)
        pipe.xrange(stream, min=str(since), max="+", count=cap)
    pipe.hvals(keys.live_archived)
    *replies, archived = await pipe.execute()
    length = sum(replies[0::3])
    newest = [entries[0][0] for entries in replies[1::3] if entries]
    recent = [entry for entries in replies[2::3] for entry in entries]
    per_minute = [0] * minutes
    for entry_id, _ in recent:
        at = int(entry_id.split(b"-")[0])
        per_minute[min(max((at - since) // 60_000, 0), minutes - 1)] += 1
    last_ms = max((int(i.split(b"-")[0]) for i in newest), default=None)
    marks = [a.decode() for a in archived]
    return {
        "stream_length": length,
        "archived_upto": max(marks, key=lambda m: tuple(map(int, m.split("-")))) if marks else None,
        "last_event_at": _iso(last_ms) if last_ms else None,
        "window_minutes": minutes,
        "per_minute": per_minute,
        "in_window": len(recent),
        "capped": any(len(entries) >= cap for entries in replies[2::3]),
        "now": _iso(now_ms),
    }


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


async def item_catalogue(client: aioredis.Redis, keys: Keys, version: str) -> dict[str, dict[str, Any]]:
    """Every item's metadata of one version (for the dashboard's search; read once per version by the caller)."""
    out: dict[str, dict[str, Any]] = {}
    async for item_id, raw in client.hscan_iter(keys.version_prefix(version) + Keys.ITEMS, count=5_000):
        out[item_id.decode()] = orjson.loads(raw) or {}
    return out


async def exists(client: aioredis.Redis, keys: Keys, version: str, *suffixes: str) -> list[bool]:
    """Whether each key of ``version`` exists (without reading the values)."""
    pipe = client.pipeline(transaction=False)
    for suffix in suffixes:
        pipe.exists(keys.version_prefix(version) + suffix)
    return [bool(n) for n in await pipe.execute()]
