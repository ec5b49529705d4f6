"""Running the API under uvicorn, with one listening socket per worker when there are several.

uvicorn's multi-worker mode binds one socket in the supervisor and shares it: every worker accepts from the same
queue, and the worker that wakes first takes a whole burst of connections (uvloop accepts until the queue is empty).
A storefront keeps a few long-lived keep-alive connections open, so one worker can end up with all of them while the
others idle; the benchmark saw runs at one core's throughput on two workers. On Linux each worker here binds its own
``SO_REUSEPORT`` socket instead, and the kernel spreads new connections over the workers by their address hash.
uvicorn has no option for this (see encode/uvicorn#2472), so it is done by handing its supervisor a stand-in that
becomes each worker's own socket when the worker unpacks it.

Before anything starts, the address is checked (a taken port is one sentence, not a log and a hang), and with the
embedded Redis this process starts or joins it first, so the workers join one server that stops with ``reco serve``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import sys
from collections.abc import Iterator
from typing import Any

APP = "api.app:create_app"
log = logging.getLogger("uvicorn.error")


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with SO_REUSEPORT (not yet listening; asyncio's server calls listen)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class ReusePortListener:
    """Stands in for the shared socket uvicorn's supervisor passes to every worker it (re)starts: pickled into the
    worker, it is rebuilt there as that worker's own :func:`reuse_port_socket`."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        return reuse_port_socket, (self.host, self.port)


class CannotListen(Exception):
    """The address to serve on cannot be used; the message says why in one sentence."""


def check_address(host: str, port: int) -> None:
    """Raise :class:`CannotListen` unless ``host:port`` can be listened on now. The probe binds without
    SO_REUSEPORT, so a port that another server holds with SO_REUSEPORT (another ``reco serve``) counts as taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a port in TIME_WAIT is free
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                reason = "the address is already in use (stop the process that listens there, or choose another --port)"
            else:
                reason = exc.strerror or str(exc)
            raise CannotListen(f"cannot listen on {host}:{port}: {reason}.") from exc


@contextlib.contextmanager
def embedded_redis_held() -> Iterator[None]:
    """With REDIS_URL unset: start (or join) the embedded Redis here, before any worker, and let go of it when serving
    ends; the workers then all join this one server, and it stops with this process if this process started it."""
    from cache.server import connect
    from recommender.config import RedisSettings

    settings = RedisSettings()  # from the environment, as the workers' app reads it
    if settings.url:
        yield
        return
    handle = connect(None, settings.data_dir)
    try:
        yield
    finally:
        handle.close()


def per_worker_sockets_supported() -> bool:
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def serve(host: str, port: int, workers: int, app: str = APP) -> None:
    """Serve the API, or another app factory given as an import string (settings come from the environment, so
    workers see the same ones). Raises :class:`CannotListen` before starting anything if the address is unusable."""
    import uvicorn

    check_address(host, port)

    # Requests are logged by the app itself (api.monitoring); uvicorn's access log would repeat them.
    options: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        "log_level": "info",
        "access_log": False,
    }
    with embedded_redis_held():
        if workers == 1 or not per_worker_sockets_supported():
            uvicorn.run(app, **options)
            return
        from uvicorn.supervisors import Multiprocess

        config = uvicorn.Config(app, **options)
        log.info("Uvicorn running on http://%s:%d with %d workers, one SO_REUSEPORT socket each", host, port, workers)
        Multiprocess(config, sockets=[ReusePortListener(host, port)]).run()  # type: ignore[list-item]
