"""One job at a time per Redis and key prefix; a version is made current only when complete; leftovers are swept.

Real `reco train` processes run against the test's real Redis server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest
from factories import isolated_settings

from cache.keys import Keys
from cache.lock import JobLock, LockHeld
from cache.publisher import IncompleteVersion, Publisher, current_version, manifest, stored_counts
from recommender.config import AlsParams, ListParams
from recommender.data.demo import generate_shop
from training.job import JobConfig, run_job, stored_keys

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def shop_files(tmp_path_factory):
    shop = generate_shop(n_users=1500, n_items=300, n_categories=8, days=120, seed=21)
    return shop.write(tmp_path_factory.mktemp("lockshop"))


def redis_url(handle) -> str:
    return handle.url or f"unix://{handle.socket_path}"


def start_train(handle, prefix: str, files, out: Path, *more: str) -> subprocess.Popen:
    """A real `reco train` process against the test Redis; stdout and stderr go to ``out``."""
    events, items = files
    env = {
        **os.environ,
        "REDIS_URL": redis_url(handle),
        "RECO_KEY_PREFIX": prefix,
        "RECO_DATA_DIR": str(out.parent),
        "RECO_FACTORS": "16",
    }
    cmd = [sys.executable, "-m", "training.cli", "train", "--events", str(events), "--items", str(items)]
    with open(out, "wb") as fh:
        return subprocess.Popen([*cmd, "--no-progress", "--no-gate", *more], stdout=fh, stderr=fh, env=env)


def assert_complete(client, keys: Keys, version: str) -> None:
    """Every list the version's manifest counts is stored."""
    info = manifest(client, keys, version)
    stored = stored_counts(client, keys, version)
    stored[Keys.ITEMS] = client.hlen(keys.version_prefix(version) + Keys.ITEMS)
    for kind, n in stored_keys(info["counts"]).items():
        assert stored.get(kind, 0) == n, (version, kind, stored.get(kind, 0), n)


def version_keys(client, keys: Keys) -> set[str]:
    """The versions that own keys under the prefix."""
    base = keys.prefix + ":v:"
    return {k.decode()[len(base) :].split(":")[0] for k in client.scan_iter(match=base + "*", count=10_000)}


def wait_for_text(path: Path, text: str, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in {path}: {path.read_text(errors='replace')}")


def test_a_second_train_exits_4_naming_the_holder_and_publishes_nothing(redis_handle, shop_files, tmp_path):
    client, prefix = redis_handle.client, f"lk{uuid.uuid4().hex[:8]}"
    keys = Keys(prefix)
    with JobLock(client, keys.job_lock, ttl_seconds=30).acquired():
        proc = start_train(redis_handle, prefix, shop_files, tmp_path / "second.log")
        assert proc.wait(timeout=120) == 4
    output = (tmp_path / "second.log").read_text()
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: another job is running"), output
    assert f"host {socket.gethostname()}, pid {os.getpid()}, started at " in lines[0]
    assert "--lock-wait" in lines[0] and "Traceback" not in output
    assert current_version(client, keys) == (None, None)
    assert client.get(keys.job_lock) is None  # the holder released it; the refused job did not touch it


def test_lock_wait_runs_the_job_once_the_holder_is_done(redis_handle, shop_files, tmp_path):
    client, prefix = redis_handle.client, f"lk{uuid.uuid4().hex[:8]}"
    keys = Keys(prefix)
    log = tmp_path / "waiting.log"
    with JobLock(client, keys.job_lock, ttl_seconds=30).acquired():
        proc = start_train(redis_handle, prefix, shop_files, log, "--lock-wait", "120")
        wait_for_text(log, "waiting up to 120 s")
        assert current_version(client, keys) == (None, None)
    assert proc.wait(timeout=200) == 0, log.read_text()
    assert f"pid {os.getpid()}" in log.read_text()
    version = current_version(client, keys)[0]
    assert version and client.get(keys.job_lock) is None
    assert_complete(client, keys, version)


def test_two_concurrent_trains_publish_two_complete_versions_one_after_the_other(redis_handle, shop_files, tmp_path):
    """Both jobs are started while the lock is taken, then let go at once: they contend for it for real."""
    client, prefix = redis_handle.client, f"lk{uuid.uuid4().hex[:8]}"
    keys = Keys(prefix)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    with JobLock(client, keys.job_lock, ttl_seconds=30).acquired():
        procs = [start_train(redis_handle, prefix, shop_files, log, "--lock-wait", "240") for log in logs]
        for log in logs:
            wait_for_text(log, "waiting up to 240 s")
    codes = [p.wait(timeout=280) for p in procs]
    assert codes == [0, 0], [log.read_text() for log in logs]
    current, previous = current_version(client, keys)
    assert current and previous and current != previous
    for version in (current, previous):
        assert_complete(client, keys, version)
    assert version_keys(client, keys) == {current, previous}
    assert {v.decode() for v in client.smembers(keys.versions)} == {current, previous}


def test_orphaned_keys_of_unfinished_versions_are_swept_by_the_next_run(redis_handle, shop_files):
    client = redis_handle.client
    settings = isolated_settings(redis_handle, "lk")
    keys = Keys(settings.redis.key_prefix)
    events, items = shop_files
    cfg = JobConfig(
        events=events,
        items=items,
        settings=settings.replace(model={"als": AlsParams(factors=8), "lists": ListParams(list_size=20)}),
        show_progress=False,
    )
    first = run_job(cfg, client).version
    half = Publisher(client, keys)  # a run killed while writing: listed in the version set
    half.put("user:u1", [["i1", 1.0]])
    half.flush()
    stray = keys.version_prefix("20200101T000000Z-0rphan")  # keys a racing cleanup unlisted: no set entry
    client.set(stray + "user:u2", b"[]")
    client.set(stray + "sim:i2", b"[]")
    assert version_keys(client, keys) == {first, half.version, "20200101T000000Z-0rphan"}
    second = run_job(cfg, client).version
    assert version_keys(client, keys) == {first, second}
    assert {v.decode() for v in client.smembers(keys.versions)} == {first, second}
    assert_complete(client, keys, second)


def test_a_version_that_lost_keys_is_never_made_current(redis_handle, keys):
    client = redis_handle.client
    good = Publisher(client, keys)
    good.put_many((f"user:u{k}", [["i1", 1.0]]) for k in range(50))
    good.commit({}, {"user": 50})
    victim = Publisher(client, keys, batch_size=10)
    victim.put_many((f"user:u{k}", [["i2", 1.0]]) for k in range(50))
    victim.flush()
    # what another job's cleanup did to a version still being written
    client.delete(*[keys.version_prefix(victim.version) + f"user:u{k}" for k in range(30)])
    with pytest.raises(IncompleteVersion, match=r"incomplete \(20 of 50 personal lists stored\); it was not made"):
        victim.commit({}, {"user": 50})
    assert current_version(client, keys)[0] == good.version


def test_a_job_that_lost_its_lock_cannot_switch_the_pointer(redis_handle, keys):
    client = redis_handle.client
    lock = JobLock(client, keys.job_lock, ttl_seconds=30).acquired()
    try:
        pub = Publisher(client, keys, lock=lock)
        pub.put("user:u1", [["i1", 1.0]])
        client.set(keys.job_lock, orjson.dumps({"token": "other", "host": "elsewhere", "pid": 1}))  # taken over
        with pytest.raises(IncompleteVersion, match="no longer holds the job lock"):
            pub.commit({}, {"user": 1})
        assert current_version(client, keys) == (None, None)
        with pytest.raises(LockHeld, match=r"host elsewhere, pid 1"):
            JobLock(client, keys.job_lock).acquire()
    finally:
        lock.release()
    assert client.get(keys.job_lock) is not None  # release never deletes someone else's lock


def test_the_lock_outlives_its_ttl_while_the_job_runs_and_is_gone_after(redis_handle, keys):
    client = redis_handle.client
    done = threading.Event()
    with JobLock(client, keys.job_lock, ttl_seconds=0.6).acquired() as lock:
        done.wait(2.0)  # more than three times the time to live
        assert client.get(keys.job_lock) == lock.token and not lock.lost
    assert client.get(keys.job_lock) is None
