"""Versioned publishing against a real Redis: atomic switch, one version per read, rollback, clean-up."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from cache.keys import Keys
from cache.publisher import Publisher, cleanup, current_version, rollback
from cache.reader import Reader

SUFFIXES = [f"user:u{i}" for i in range(50)]


@pytest.fixture()
def redis_handle(redis_backend):
    """Every test here runs on one Redis server and on a Redis Cluster."""
    return redis_backend


def publish(handle, keys: Keys, marker: str, on_each=None) -> str:
    pub = Publisher(handle.client, keys, batch_size=7)
    for i, s in enumerate(SUFFIXES):
        pub.put(s, marker)
        if on_each:
            on_each(i)
    pub.commit({"marker": marker})
    return pub.version


def test_nothing_visible_before_commit(redis_handle, keys):
    pub = Publisher(redis_handle.client, keys)
    pub.put("user:u1", "x")
    pub.flush()
    assert current_version(redis_handle.client, keys) == (None, None)
    pub.commit({})
    assert current_version(redis_handle.client, keys) == (pub.version, None)


def test_reader_during_publish_sees_exactly_one_version(redis_handle, keys):
    v1 = publish(redis_handle, keys, "one")
    seen: list[tuple[str, set]] = []
    done = threading.Event()
    started = threading.Event()

    def slow(i: int) -> None:  # keep the publish open long enough for many reads to overlap it
        if i == 10:
            started.set()
        time.sleep(0.003)

    def writer() -> None:
        publish(redis_handle, keys, "two", on_each=slow)
        done.set()

    async def read_until_done() -> None:
        reader = Reader(redis_handle.async_client(), keys)
        while not done.is_set() or len(seen) < 3 or seen[-1][0] == v1:
            version, values = await reader.fetch(*SUFFIXES)
            seen.append((version, set(values)))
            await asyncio.sleep(0)
        await reader.client.aclose()

    thread = threading.Thread(target=writer)
    thread.start()
    started.wait(5)
    asyncio.run(read_until_done())
    thread.join()
    versions = [v for v, _ in seen]
    assert versions[0] == v1 and versions[-1] != v1
    assert versions.count(v1) > 5  # many reads happened while the new version was being written
    for version, values in seen:  # every read is internally consistent
        assert values == ({"one"} if version == v1 else {"two"})


def test_rollback_swaps_current_and_previous(redis_handle, keys):
    with pytest.raises(RuntimeError, match="no previous version"):
        publish(redis_handle, keys, "one") and rollback(redis_handle.client, keys)
    v1 = current_version(redis_handle.client, keys)[0]
    v2 = publish(redis_handle, keys, "two")
    assert rollback(redis_handle.client, keys) == v1
    assert current_version(redis_handle.client, keys) == (v1, v2)
    assert rollback(redis_handle.client, keys) == v2  # a second rollback undoes the first


def test_old_versions_removed_previous_kept(redis_handle, keys):
    v1 = publish(redis_handle, keys, "one")
    v2 = publish(redis_handle, keys, "two")
    v3 = publish(redis_handle, keys, "three")
    client = redis_handle.client
    assert client.exists(keys.version_prefix(v1) + "user:u0") == 0
    assert client.exists(keys.version_prefix(v2) + "user:u0") == 1
    assert {v.decode() for v in client.smembers(keys.versions)} == {v2, v3}


def test_killed_publish_leaves_current_serving_and_is_cleaned_next_run(redis_handle, keys):
    v1 = publish(redis_handle, keys, "one")
    half = Publisher(redis_handle.client, keys)
    for s in SUFFIXES[:20]:
        half.put(s, "half")
    half.flush()  # the process dies here: no commit, no abort
    assert current_version(redis_handle.client, keys)[0] == v1
    assert redis_handle.client.exists(keys.version_prefix(half.version) + "user:u0") == 1
    v2 = publish(redis_handle, keys, "two")
    assert redis_handle.client.exists(keys.version_prefix(half.version) + "user:u0") == 0
    assert current_version(redis_handle.client, keys) == (v2, v1)
    assert cleanup(redis_handle.client, keys) == []


def test_put_many_writes_every_key_across_batches(redis_handle, keys):
    pub = Publisher(redis_handle.client, keys, batch_size=7)
    assert pub.put_many((s, [[s, 1.0]]) for s in SUFFIXES) == len(SUFFIXES) == pub.written
    pub.commit({})
    base = keys.version_prefix(pub.version)
    assert [redis_handle.client.get(base + s) for s in SUFFIXES] == [f'[["{s}",1.0]]'.encode() for s in SUFFIXES]


def test_a_version_pushed_out_stays_readable_for_the_grace_then_expires(redis_handle, keys):
    def publish_with_grace(marker: str) -> str:
        pub = Publisher(redis_handle.client, keys, grace_seconds=30)
        for s in SUFFIXES:
            pub.put(s, marker)
        pub.commit({"marker": marker})
        return pub.version

    v1 = publish_with_grace("one")
    publish_with_grace("two")
    v3 = publish_with_grace("three")
    client = redis_handle.client
    key = keys.key(v1, SUFFIXES[0])
    assert client.get(key) == b'"one"'  # readers that still trust an older pointer find it whole
    assert 0 < client.pttl(key) <= 30_000 and client.pttl(keys.key(v3, SUFFIXES[0])) == -1
    assert v1 not in {v.decode() for v in client.smembers(keys.versions)}
    cleanup(client, keys, grace_seconds=30)  # a second clean-up within the grace does not delete it early
    assert client.get(key) == b'"one"'
