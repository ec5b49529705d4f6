"""Serving with several workers: each worker gets its own SO_REUSEPORT socket, so connections spread over them."""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from api.server import ReusePortListener, per_worker_sockets_supported

pytestmark = pytest.mark.skipif(not per_worker_sockets_supported(), reason="per-worker sockets need Linux SO_REUSEPORT")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_each_unpickled_listener_is_its_own_socket_and_the_kernel_spreads_connections() -> None:
    port = free_port()
    stand_in = ReusePortListener("127.0.0.1", port)
    workers = [pickle.loads(pickle.dumps(stand_in)) for _ in range(2)]  # what two worker processes receive
    try:
        for sock in workers:
            assert sock.getsockname() == ("127.0.0.1", port)
            sock.listen(64)
            sock.setblocking(False)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
        time.sleep(0.1)
        accepted = [0, 0]
        for k, sock in enumerate(workers):
            while True:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    break
                conn.close()
                accepted[k] += 1
        assert sum(accepted) == 32
        assert min(accepted) > 0  # all 32 on one socket: probability 2**-31 with hash spreading
        for c in clients:
            c.close()
    finally:
        for sock in workers:
            sock.close()


def test_reco_serve_with_two_workers_answers_and_stops_on_sigterm(redis_handle, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "RECO_DATA_DIR": str(redis_handle.data_dir or tmp_path), "RECO_KEY_PREFIX": "srvtest"}
    if redis_handle.url:
        env["REDIS_URL"] = redis_handle.url
    proc = subprocess.Popen(
        [sys.executable, "-m", "training.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "one SO_REUSEPORT socket each" in out
    assert out.count("Application startup complete") == 2
    assert proc.returncode == 0
