"""Shared fixtures: one real Redis server for the whole run (REDIS_URL if set, else an embedded redis-server)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from factories import isolated_settings
from redis_cluster import LocalCluster

from cache.keys import Keys
from cache.server import RedisHandle, connect
from recommender.config import Settings


@pytest.fixture(scope="session")
def redis_single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisHandle]:
    data_dir = tmp_path_factory.mktemp("redis")
    handle = connect(os.environ.get("REDIS_URL"), data_dir)
    assert handle.client.ping()
    yield handle
    handle.close()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A real Redis Cluster on loopback (3 primaries, 3 replicas), started on first use, stopped at the end."""
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def redis_cluster_handle(
    redis_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisHandle]:
    handle = connect(redis_cluster.url, tmp_path_factory.mktemp("cluster-data"), cluster=True)
    assert handle.client.ping()
    yield handle
    handle.close()


@pytest.fixture(scope="session")
def redis_handle(redis_single: RedisHandle) -> RedisHandle:
    """The test server; modules that also run on a cluster override this with :func:`redis_backend`."""
    return redis_single


@pytest.fixture(params=["single", "cluster"])
def redis_backend(request: pytest.FixtureRequest) -> RedisHandle:
    """One Redis server, then a Redis Cluster: a module runs its tests on both with
    ``redis_handle = pytest.fixture(lambda redis_backend: redis_backend)``-style overrides."""
    return request.getfixturevalue("redis_single" if request.param == "single" else "redis_cluster_handle")


@pytest.fixture()
def settings(redis_handle: RedisHandle) -> Settings:
    """Settings pointing at the test server, with a key prefix of its own so tests never see each other's data."""
    return isolated_settings(redis_handle, "t")


@pytest.fixture()
def keys(settings: Settings) -> Keys:
    return Keys(settings.redis.key_prefix)


@pytest.fixture()
def host_zone(monkeypatch: pytest.MonkeyPatch):
    """Pin the process time zone to UTC (DuckDB takes its session zone from it); yields a setter for other zones.

    The loader must not depend on it (test_timestamps_do_not_depend_on_the_host_time_zone switches it); the
    other tests pin it so that a regression shows up in that one test, not everywhere.
    """
    if not hasattr(time, "tzset"):
        pytest.skip("needs time.tzset to control the process time zone")

    def set_zone(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    set_zone("UTC")
    yield set_zone
    monkeypatch.undo()
    time.tzset()
