"""Shared fixtures: one real Redis server for the whole run (REDIS_URL if set, else an embedded redis-server)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from factories import isolated_settings

from cache.keys import Keys
from cache.server import RedisHandle, connect
from recommender.config import Settings


@pytest.fixture(scope="session")
def redis_handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisHandle]:
    data_dir = tmp_path_factory.mktemp("redis")
    handle = connect(os.environ.get("REDIS_URL"), data_dir)
    assert handle.client.ping()
    yield handle
    handle.close()


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
