"""Running the API under uvicorn, with one listening socket per worker when there are several.

uvicorn's multi-worker mode binds one socket in the supervisor and shares it: every worker accepts from the same
queue, and the worker that wakes first takes a whole burst of connections (uvloop accepts until the queue is empty).
A storefront keeps a few long-lived keep-alive connections open, so one worker can end up with all of them while the
others idle; the benchmark saw runs at one core's throughput on two workers. On Linux each worker here binds its own
``SO_REUSEPORT`` socket instead, and the kernel spreads new connections over the workers by their address hash.
uvicorn has no option for this (see encode/uvicorn#2472), so it is done by handing its supervisor a stand-in that
becomes each worker's own socket when the worker unpacks it.
"""

from __future__ import annotations

import logging
import socket
import sys
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


def per_worker_sockets_supported() -> bool:
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def serve(host: str, port: int, workers: int, app: str = APP) -> None:
    """Serve the API, or another app factory given as an import string (settings come from the environment, so
    workers see the same ones)."""
    import uvicorn

    # Requests are logged by the app itself (api.monitoring); uvicorn's access log would repeat them.
    options: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        "log_level": "info",
        "access_log": False,
    }
    if workers == 1 or not per_worker_sockets_supported():
        uvicorn.run(app, **options)
        return
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(app, **options)

    try:  # fail here, with uvicorn's message, if the address is taken or invalid
        reuse_port_socket(host, port).close()
    except OSError as exc:
        log.error(exc)
        sys.exit(3)
    log.info("Uvicorn running on http://%s:%d with %d workers, one SO_REUSEPORT socket each", host, port, workers)
    Multiprocess(config, sockets=[ReusePortListener(host, port)]).run()  # type: ignore[list-item]
