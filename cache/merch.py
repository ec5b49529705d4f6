"""Merchandising state in Redis: rules and live catalogue updates, durable and versioned apart from the model.

``<prefix>:merch:rules`` is a hash of rule name -> rule JSON, ``<prefix>:merch:items`` a hash of item id -> the
item's live catalogue fields (JSON), and ``<prefix>:merch:gen`` a counter raised in the same MULTI/EXEC as every
change, which is then announced on the pointer channel. The API reads the counter with the current-version pointer
(:mod:`cache.pointer`: at most a pointer TTL old, re-read at once on the announcement) and reloads the state when it
moved, so a change counts from the next request on the worker that made it, and within the pointer TTL (at once on
hearing the announcement) on every other worker. The nightly job reads the item
updates like the catalogue file; published versions never hold them, so a rollback does not undo a campaign.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis

from cache.keys import Keys


def _item_json(update: Mapping[str, Any], before: bytes | None) -> bytes:
    merged = orjson.loads(before) if before else {}
    merged.update({k: v for k, v in update.items() if v is not None and k != "item_id"})
    return orjson.dumps(merged)


async def _announce(client: aioredis.Redis, keys: Keys) -> None:
    """Tell every API worker to re-read the pointer and the generation now (they would within the pointer TTL)."""
    await client.publish(keys.pointer_channel, "merch")


async def upsert_items(client: aioredis.Redis, keys: Keys, updates: Iterable[Mapping[str, Any]]) -> int:
    """Merge catalogue updates (fields left out or None keep their stored values); returns the new generation.

    WATCH makes the read-merge-write atomic against a concurrent update of the same items."""
    updates = list(updates)
    ids = [u["item_id"] for u in updates]
    async with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(keys.merch_items)
                before = dict(zip(ids, await pipe.hmget(keys.merch_items, ids))) if ids else {}
                merged: dict[str, bytes] = {}
                for update in updates:
                    merged[update["item_id"]] = _item_json(
                        update, merged.get(update["item_id"]) or before[update["item_id"]]
                    )
                pipe.multi()
                if merged:
                    pipe.hset(keys.merch_items, mapping=merged)
                pipe.incr(keys.merch_gen)
                generation = int((await pipe.execute())[-1])
                await _announce(client, keys)
                return generation
            except redis.WatchError:
                continue


async def put_rule(client: aioredis.Redis, keys: Keys, name: str, rule: Mapping[str, Any]) -> bool:
    """Store a rule under ``name``; True when it replaced one."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.hset(keys.merch_rules, name, orjson.dumps(rule))
        pipe.incr(keys.merch_gen)
        added, _ = await pipe.execute()
    await _announce(client, keys)
    return not added


async def delete_rule(client: aioredis.Redis, keys: Keys, name: str) -> bool:
    """Remove a rule; False when there was none of that name."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.hdel(keys.merch_rules, name)
        pipe.incr(keys.merch_gen)
        removed, _ = await pipe.execute()
    await _announce(client, keys)
    return bool(removed)


async def load(client: aioredis.Redis, keys: Keys) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """(generation, rules by name, item updates by id), read in one transaction so they belong together."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.get(keys.merch_gen)
        pipe.hgetall(keys.merch_rules)
        pipe.hgetall(keys.merch_items)
        gen, rules, items = await pipe.execute()
    return (
        int(gen or 0),
        {k.decode(): orjson.loads(v) for k, v in rules.items()},
        {k.decode(): orjson.loads(v) for k, v in items.items()},
    )


def item_updates(client: redis.Redis, keys: Keys) -> dict[str, dict[str, Any]]:
    """Every live catalogue update by item id (sync; the nightly job's read)."""
    return {k.decode(): orjson.loads(v) for k, v in client.hgetall(keys.merch_items).items()}
