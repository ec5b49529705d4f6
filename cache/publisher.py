"""Versioned publishing: write a whole new version, then switch the pointer in one atomic step.

A run writes every key under a fresh version id, counts what is stored against what it wrote (a version missing
any list is never made current), then a Lua script sets ``previous = current`` and ``current = new`` atomically
(and only while the job still holds its lock, :mod:`cache.lock`) and announces the new version on the pointer
channel. Readers pin one version id per request (see :mod:`cache.reader`), so an answer never mixes two versions.

The previous version stays for rollback. A committed version that stops being current or previous stays readable
for ``grace_seconds`` (the API's pointer TTL plus its longest request: workers trust their copy of the pointer that
long), then Redis expires its keys; every other key under ``<prefix>:v:`` (a version left half-written by a killed
run, keys no version set lists any more) is deleted by the next publish or by ``cleanup()``.

On a Redis Cluster the same steps work node by node and key by key: values are written with SET (an MSET must stay
within one slot), counting and sweeping run on every primary, every replica has caught up before the pointer moves
(so a read from a replica finds the new version whole), and the scripts that move the pointer touch only keys of the
pointer's slot.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from datetime import datetime, timezone
from itertools import islice
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis

from cache.keys import Keys
from cache.lock import JobLock
from cache.server import is_cluster

# KEYS: current, previous, job lock (one slot); ARGV: new version, lock token ('' for none), pointer channel.
_SWITCH = """
local new = ARGV[1]
if ARGV[2] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[2] then
  return redis.error_reply('this job no longer holds the job lock (it expired or another job took it)')
end
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= new then redis.call('SET', KEYS[2], cur) end
redis.call('SET', KEYS[1], new)
redis.call('PUBLISH', ARGV[3], new)
return cur
"""

# One SCAN step over the keys matching ARGV[2]; counts them by kind (the suffix segment after ARGV[4]).
_COUNT_STEP = """
local res = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local skip = string.len(ARGV[4])
local counts = {}
for _, key in ipairs(res[2]) do
  local kind = string.match(string.sub(key, skip + 1), '^[^:]*')
  counts[kind] = (counts[kind] or 0) + 1
end
local flat = {}
for kind, n in pairs(counts) do flat[#flat + 1] = kind; flat[#flat + 1] = n end
return {res[1], flat}
"""

# One SCAN step over <prefix>:v:*, by the version of each key (the segment after ARGV[4]): the ARGV[5] versions
# after it are kept, keys of the (version, unix ms) pairs after those expire at that time, every other key is unlinked.
_SWEEP_STEP = """
local res = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local skip = string.len(ARGV[4])
local nkeep = tonumber(ARGV[5])
local keep, expire = {}, {}
for i = 6, 5 + nkeep do keep[ARGV[i]] = true end
for i = 6 + nkeep, #ARGV, 2 do expire[ARGV[i]] = ARGV[i + 1] end
local removed = 0
for _, key in ipairs(res[2]) do
  local version = string.match(string.sub(key, skip + 1), '^[^:]*')
  if expire[version] then redis.call('PEXPIREAT', key, expire[version])
  elseif not keep[version] then redis.call('UNLINK', key); removed = removed + 1 end
end
return {res[1], removed}
"""
SCAN_STEP = 10_000
"""Keys a SCAN step looks at inside one script call (a few milliseconds of Redis time, so readers barely wait)."""

KIND_NAMES = {
    "user": "personal lists",
    "next": "next-purchase lists",
    "cust": "on-request customers",
    "hist": "customer histories",
    "istat": "item statistics",
    "sim": "similar-item lists",
    "seg": "customer segments",
    "best": "bestseller lists",
    "kpis": "KPI tables",
    Keys.ITEMS: "catalogue items",
}


class IncompleteVersion(Exception):
    """A version lacks keys it wrote (deleted or lost before the switch); it was not made current."""


# Swaps current and previous atomically; returns the version now serving, or nil when there is no previous one.
ROLLBACK_SCRIPT = """
local cur = redis.call('GET', KEYS[1])
local prev = redis.call('GET', KEYS[2])
if not prev then return false end
redis.call('SET', KEYS[1], prev)
if cur then redis.call('SET', KEYS[2], cur) end
redis.call('PUBLISH', ARGV[1], prev)
return prev
"""


def rollback_command(keys: Keys) -> tuple[Any, ...]:
    """Arguments of ``client.eval`` that swap current and previous and announce it (sync or asyncio clients)."""
    return ROLLBACK_SCRIPT, 2, keys.current, keys.previous, keys.pointer_channel


class NoPreviousVersion(RuntimeError):
    """A rollback was asked for, but no previous version is kept."""

    def __init__(self) -> None:
        super().__init__("there is no previous version to roll back to")


def dumps(value: Any) -> bytes:
    """A value as stored: bytes as they are (already encoded, e.g. by :mod:`cache.codec`), anything else as JSON."""
    if isinstance(value, bytes):
        return value
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


class Publisher:
    """Writes one new version; nothing is visible to readers until :meth:`commit`. ``grace_seconds``: how long a
    version this commit pushes out stays readable (the API's pointer TTL plus its longest request)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        batch_size: int = 5_000,
        lock: JobLock | None = None,
        grace_seconds: float = 0.0,
    ) -> None:
        self.client = client
        self.keys = keys
        self.batch_size = batch_size
        self.lock = lock
        self.grace_seconds = grace_seconds
        self.cluster = is_cluster(client)
        self.version = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
        self._base = keys.version_prefix(self.version)
        self._pipe = client.pipeline(transaction=False)
        self._pending = 0
        self._sender: ThreadPoolExecutor | None = None
        self._in_flight: Future | None = None
        self.written = 0
        client.sadd(keys.versions, self.version)

    def put(self, suffix: str, value: Any) -> None:
        """Queue one key of this version (value JSON-encoded unless it is bytes)."""
        self._pipe.set(self._base + suffix, dumps(value))
        self._count()

    def put_raw(self, suffix: str, value: bytes) -> None:
        """Queue one key of this version holding raw bytes."""
        self._pipe.set(self._base + suffix, value)
        self._count()

    def put_many(self, pairs: Iterable[tuple[str, Any]]) -> int:
        """Queue many keys (JSON-encoded unless bytes), as MSET commands of up to ``batch_size`` keys on one server
        and as SETs on a cluster (an MSET must stay within one slot); returns how many."""
        n = 0
        it = iter(pairs)
        while chunk := list(islice(it, self.batch_size)):
            if self.cluster:
                for suffix, value in chunk:
                    self._pipe.set(self._base + suffix, dumps(value))
            else:
                self._pipe.mset({self._base + suffix: dumps(value) for suffix, value in chunk})
            n += len(chunk)
            self._count(len(chunk))
        return n

    def put_items(self, metadata: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Item metadata as one hash field per item (HSET commands of up to ``batch_size`` fields)."""
        key = self._base + Keys.ITEMS
        it = iter(metadata)
        while chunk := list(islice(it, self.batch_size)):
            self._pipe.hset(key, mapping={item_id: dumps(meta) for item_id, meta in chunk})
            self._count(len(chunk))

    def _count(self, keys: int = 1) -> None:
        self._pending += keys
        self.written += keys
        if self._pending >= self.batch_size:
            self._send()

    def _send(self) -> None:
        """Hand the queued commands to a sender thread and queue the next ones in a new pipeline: Redis stores one
        batch (and syncs its append-only file) while the job computes the next. At most one batch is in flight, so
        memory stays bounded; an error in it is raised by the next send or flush."""
        if not self._pending:
            return
        pipe, self._pipe, self._pending = self._pipe, self.client.pipeline(transaction=False), 0
        self._wait()
        if self._sender is None:
            self._sender = ThreadPoolExecutor(1, thread_name_prefix="publish")
        self._in_flight = self._sender.submit(pipe.execute)

    def _wait(self) -> None:
        if self._in_flight is not None:
            sent, self._in_flight = self._in_flight, None
            sent.result()

    def _stop_sender(self) -> None:
        if self._sender is not None:
            self._sender.shutdown(wait=True)
            self._sender = None

    def flush(self) -> None:
        """Write everything queued so far and wait until Redis has it."""
        try:
            self._send()
            self._wait()
        finally:
            self._stop_sender()

    def commit(self, manifest: dict[str, Any], expected: Mapping[str, int] | None = None) -> str | None:
        """Write the manifest, check that every key ``expected`` counts is stored (kind -> keys, ``items`` -> hash
        fields; raises IncompleteVersion), switch ``current`` to this version atomically (while the job lock is
        still ours), retire every other version; return the replaced one."""
        self.put(Keys.MANIFEST, {**manifest, "version": self.version})
        self.flush()
        self.verify(expected or {})
        if not self.client.exists(self._base + Keys.MANIFEST):
            raise IncompleteVersion(f"version {self.version} was not made current: it has no manifest")
        if self.cluster:
            wait_for_replicas(self.client)
        token = self.lock.token if self.lock else b""
        try:
            replaced = self.client.eval(
                _SWITCH,
                3,
                self.keys.current,
                self.keys.previous,
                self.keys.job_lock,
                self.version,
                token,
                self.keys.pointer_channel,
            )
        except redis.ResponseError as exc:
            raise IncompleteVersion(f"version {self.version} was not made current: {exc}") from None
        cleanup(self.client, self.keys, self.grace_seconds)
        return replaced.decode() if replaced else None

    def verify(self, expected: Mapping[str, int]) -> None:
        """Raise IncompleteVersion when fewer keys of a kind are stored than ``expected`` says were written."""
        stored = stored_counts(self.client, self.keys, self.version)
        if Keys.ITEMS in expected:
            stored[Keys.ITEMS] = self.client.hlen(self._base + Keys.ITEMS)
        # SCAN may return a key twice, never miss one: fewer keys than written means some were lost.
        missing = [(kind, stored.get(kind, 0), n) for kind, n in expected.items() if stored.get(kind, 0) < n]
        if missing:
            what = "; ".join(f"{got:,} of {n:,} {KIND_NAMES.get(kind, kind)}" for kind, got, n in missing)
            raise IncompleteVersion(f"version {self.version} is incomplete ({what} stored); it was not made current")

    def abort(self) -> None:
        """Forget this version (its keys are removed)."""
        self._pipe.reset()
        try:
            with suppress(Exception):  # the batch in flight failed too: its keys, if any, are removed below
                self._wait()
        finally:
            self._stop_sender()
        delete_version(self.client, self.keys, self.version)


def wait_for_replicas(client: Any, timeout: float = 30.0) -> None:
    """On a cluster, wait until every replica has every write its primary had when this was called (replication
    offsets), so that the new version is whole on replicas before readers are sent to it."""
    deadline = time.monotonic() + timeout
    primaries = client.get_primaries()
    targets = {n.name: int(client.info("replication", target_nodes=n)["master_repl_offset"]) for n in primaries}
    for node in primaries:
        while True:
            info = client.info("replication", target_nodes=node)
            replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
            if all(int(r["offset"]) >= targets[node.name] for r in replicas):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"replicas of {node.name} did not catch up within {timeout:g} s")
            time.sleep(0.01)


def _scan_steps(client: Any, script: str, *args: Any) -> Iterable[Any]:
    """The replies of a SCAN-step script run to the end of the keyspace (of every primary on a cluster)."""
    nodes = client.get_primaries() if is_cluster(client) else [None]
    for node in nodes:
        cursor: Any = b"0"
        while True:
            if node is None:
                cursor, reply = client.eval(script, 0, cursor, *args)
            else:
                cursor, reply = client.execute_command("EVAL", script, 0, cursor, *args, target_nodes=node)
            yield reply
            if cursor in (b"0", 0, "0"):
                break


def delete_version(client: redis.Redis, keys: Keys, version: str) -> int:
    """Remove every key of one version."""
    removed = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=keys.version_prefix(version) + "*", count=10_000):
        batch.append(key)
        if len(batch) >= 10_000:
            removed += client.unlink(*batch)
            batch.clear()
    if batch:
        removed += client.unlink(*batch)
    client.srem(keys.versions, version)
    return removed


def stored_counts(client: redis.Redis, keys: Keys, version: str) -> dict[str, int]:
    """Keys stored under one version, by kind (``user``, ``next``, ``sim``, ...), counted inside Redis."""
    base = keys.version_prefix(version)
    counts: dict[str, int] = {}
    for flat in _scan_steps(client, _COUNT_STEP, base + "*", SCAN_STEP, base):
        for kind, n in zip(flat[::2], flat[1::2]):
            counts[kind.decode()] = counts.get(kind.decode(), 0) + int(n)
    return counts


def unfinished_versions(client: redis.Redis, keys: Keys) -> list[str]:
    """Versions in the version set that are neither current nor previous (being written, or left by a dead run)."""
    keep = {v.decode() for v in client.mget(keys.current, keys.previous) if v}
    return sorted(v.decode() for v in client.smembers(keys.versions) if v.decode() not in keep)


def cleanup(client: redis.Redis, keys: Keys, grace_seconds: float = 0.0) -> list[str]:
    """Retire every key under ``<prefix>:v:`` but those of the current and the previous version: a committed
    version just pushed out expires ``grace_seconds`` from now (``{<prefix>}:retired`` keeps the deadline, so a
    second cleanup meanwhile does not delete it early); half-written ones of killed runs and keys of versions no
    longer listed anywhere are deleted at once. Returns the versions removed from the set. The job calls it while
    holding the job lock, so no version is being written."""
    keep = [v.decode() for v in client.mget(keys.current, keys.previous) if v]
    gone = unfinished_versions(client, keys)
    now_ms = int(time.time() * 1000)
    if grace_seconds > 0:
        committed = [v for v in gone if client.exists(keys.key(v, Keys.MANIFEST))]
        if committed:
            client.zadd(keys.retired, dict.fromkeys(committed, now_ms + int(grace_seconds * 1000)), nx=True)
    client.zremrangebyscore(keys.retired, "-inf", now_ms)
    retiring = [(v.decode(), int(ms)) for v, ms in client.zrange(keys.retired, 0, -1, withscores=True)]
    expiring = [x for v, ms in retiring if v not in keep for x in (v, ms)]
    prefix = keys.prefix + ":v:"
    for _ in _scan_steps(client, _SWEEP_STEP, prefix + "*", SCAN_STEP, prefix, len(keep), *keep, *expiring):
        pass
    if gone:
        client.srem(keys.versions, *gone)
    return gone


def _rolled_back(reply: bytes | None) -> str:
    if reply is None:
        raise NoPreviousVersion()
    return reply.decode()


def rollback(client: redis.Redis, keys: Keys) -> str:
    """Serve the previous version again (the current one becomes 'previous', so a second rollback undoes it); raises
    :class:`NoPreviousVersion` when there is none."""
    return _rolled_back(client.eval(*rollback_command(keys)))


async def rollback_async(client: aioredis.Redis, keys: Keys) -> str:
    """:func:`rollback` on an asyncio client (the API's)."""
    return _rolled_back(await client.eval(*rollback_command(keys)))


def current_version(client: redis.Redis, keys: Keys) -> tuple[str | None, str | None]:
    cur, prev = client.mget(keys.current, keys.previous)
    return (cur.decode() if cur else None, prev.decode() if prev else None)


def manifest(client: redis.Redis, keys: Keys, version: str) -> dict[str, Any] | None:
    raw = client.get(keys.key(version, Keys.MANIFEST))
    return orjson.loads(raw) if raw else None
