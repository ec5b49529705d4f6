"""One job at a time per Redis and key prefix: a lock key with a time to live that the running job keeps renewing.

Usage: ``with JobLock(client, keys.job_lock, ttl).acquired(wait_seconds) as lock: ...`` (raises LockHeld).

``<prefix>:job:lock`` holds JSON naming the holder (token, host, pid, start time). ``SET NX PX`` takes it; a
background thread renews its time to live every third of it while the job runs, and only while the key still
holds this job's token; releasing deletes it only then too. A job killed without releasing holds the lock for at
most one time to live. The publisher's pointer switch checks the token in the same script that moves ``current``
(see :mod:`cache.publisher`), so a job that lost its lock (paused for longer than the time to live) can never make
its version current.

Written here rather than taken from redis-py's ``Lock`` because the holder must be readable (host, pid, start
time) for the message a second job prints, and the token must be checked inside the publisher's own script.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

import orjson
import redis

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
POLL_SECONDS = 0.5
"""How often a waiting job looks at the lock again."""
log = logging.getLogger("reco.job")


class LockHeld(Exception):
    """Another job holds the lock (for longer than this one was willing to wait)."""

    def __init__(self, holder: dict[str, Any] | None, waited: float = 0, lapses_ms: int = -1) -> None:
        self.holder = holder or {}
        who = (
            f"host {self.holder.get('host', '?')}, pid {self.holder.get('pid', '?')}, "
            f"started at {self.holder.get('started_at', '?')}"
        )
        wait = f", waited {waited:g} s" if waited else ""
        lapse = f"; if that job is gone, its lock lapses within {lapses_ms / 1000:.0f} s" if lapses_ms > 0 else ""
        super().__init__(f"another job is running against this Redis and key prefix ({who}{wait}){lapse}")


class JobLock:
    """The job lock of one key prefix; use as a context manager around the whole job."""

    def __init__(self, client: redis.Redis, key: str, ttl_seconds: float = 60.0) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = int(ttl_seconds * 1000)
        self.token = orjson.dumps(
            {
                "token": secrets.token_hex(8),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
        )
        self.lost = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def holder(self) -> dict[str, Any] | None:
        """Who holds the lock now (None when nobody does)."""
        raw = self.client.get(self.key)
        try:
            return orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return {"host": raw.decode(errors="replace")}

    def acquire(self, wait_seconds: float = 0.0) -> None:
        """Take the lock, waiting up to ``wait_seconds`` for the holder to finish; raises LockHeld after that."""
        start = time.monotonic()
        announced = False
        while not self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
            waited = time.monotonic() - start
            if waited >= wait_seconds:
                raise LockHeld(self.holder(), round(waited) if wait_seconds else 0, self.client.pttl(self.key))
            if not announced:
                log.warning("%s; waiting up to %g s for it to finish", LockHeld(self.holder()), wait_seconds)
                announced = True
            time.sleep(min(POLL_SECONDS, wait_seconds - waited))
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, name="job-lock-renewal", daemon=True)
        self._renewer.start()

    def acquired(self, wait_seconds: float = 0.0) -> JobLock:
        """:meth:`acquire`, then the lock itself, for ``with JobLock(...).acquired(wait):``."""
        self.acquire(wait_seconds)
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                if not self.client.eval(_RENEW, 1, self.key, self.token, self.ttl_ms):
                    self.lost = True  # expired or taken over: the publisher's switch will refuse this job
                    return
            except redis.RedisError:
                continue  # Redis away for a moment: try again at the next beat, the TTL covers two more

    def release(self) -> None:
        """Stop renewing and delete the lock if it is still ours."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        with contextlib.suppress(redis.RedisError):  # unreachable Redis: the lock expires by itself
            self.client.eval(_RELEASE, 1, self.key, self.token)

    def __enter__(self) -> JobLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
