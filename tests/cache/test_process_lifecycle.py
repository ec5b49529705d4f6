"""Processes for real: the embedded Redis lives as long as the process that started it, and a taken port stops
``reco serve`` at once with one sentence. Real subprocesses, real signals, real redis-server processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from cache.server import connect

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def embedded_server_pid(data_dir: Path) -> int | None:
    """Process id of the embedded redis-server serving ``data_dir`` (asked over its socket), None if none runs."""
    registry = data_dir / "reco.rdb.settings"
    if not registry.exists():
        return None
    socket_file = json.loads(registry.read_text())["unixsocket"]
    try:
        return int(redis.Redis(unix_socket_path=socket_file).info("server")["process_id"])
    except (redis.ConnectionError, FileNotFoundError):
        return None


def gone(pid: int, within: float = 15.0) -> bool:
    deadline = time.time() + within
    while time.time() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture()
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data directory of its own (no embedded server runs there yet); whatever server is left is killed after."""
    path = tmp_path / "data"
    yield path
    pid = embedded_server_pid(path)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)


def spawn(args: list[str], data_dir: Path, **env: str) -> subprocess.Popen:
    environment = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    environment.update({"RECO_DATA_DIR": str(data_dir), **env})
    return subprocess.Popen(
        args,
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def reco(*args: str) -> list[str]:
    return [sys.executable, "-m", "training.cli", *args]


def wait_healthy(port: int, proc: subprocess.Popen, within: float = 60.0) -> None:
    deadline = time.time() + within
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                assert response.status == 200
                return
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(f"reco serve exited {proc.returncode}: {proc.communicate()}") from None
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def stop(proc: subprocess.Popen, sig: int) -> tuple[str, str]:
    try:
        os.kill(proc.pid, sig)
        return proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


@pytest.mark.parametrize(
    ("sig", "workers"),
    [(signal.SIGTERM, 1), (signal.SIGTERM, 2), (signal.SIGINT, 1)],
    ids=["term", "term-2-workers", "ctrl-c"],
)
def test_reco_serve_stops_the_embedded_redis_it_started(data_dir: Path, sig: int, workers: int) -> None:
    port = free_port()
    proc = spawn(reco("serve", "--port", str(port), "--workers", str(workers)), data_dir)
    try:
        wait_healthy(port, proc)
        pid = embedded_server_pid(data_dir)
        assert pid is not None, "reco serve did not start an embedded redis-server"
    finally:
        stop(proc, sig)
    assert gone(pid), f"redis-server {pid} started by reco serve still runs after it got signal {sig}"


def test_any_command_that_started_the_embedded_redis_stops_it_on_sigterm(data_dir: Path) -> None:
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from cache.server import connect
        handle = connect(None, Path({str(data_dir)!r}))
        handle.client.set("k", "v")
        print("ready", flush=True)
        time.sleep(120)
        """
    )
    proc = spawn([sys.executable, "-c", script], data_dir)
    try:
        assert proc.stdout.readline().strip() == "ready"
        pid = embedded_server_pid(data_dir)
        assert pid is not None
    finally:
        stop(proc, signal.SIGTERM)
    assert gone(pid), "the redis-server outlived the process that started it"
    # Stopped with a save: the next start has the data.
    handle = connect(None, data_dir)
    try:
        assert handle.client.get("k") == b"v"
    finally:
        handle.close()


def test_a_process_that_joined_leaves_the_server_to_its_owner(data_dir: Path) -> None:
    owner = connect(None, data_dir)
    try:
        pid = embedded_server_pid(data_dir)
        status = spawn(reco("status"), data_dir)
        status.communicate(timeout=60)
        assert status.returncode == 0
        port = free_port()
        serve = spawn(reco("serve", "--port", str(port)), data_dir)
        try:
            wait_healthy(port, serve)
        finally:
            stop(serve, signal.SIGTERM)
        assert psutil.pid_exists(pid) and owner.client.ping(), "a joining process stopped its owner's server"
    finally:
        owner.close()
    assert gone(pid), "closing the owner's handle did not stop the server"


def test_a_server_whose_owner_was_killed_is_adopted_by_the_next_process(data_dir: Path) -> None:
    script = (
        "from pathlib import Path; import time; from cache.server import connect; "
        f"connect(None, Path({str(data_dir)!r})); print('ready', flush=True); time.sleep(120)"
    )
    proc = spawn([sys.executable, "-c", script], data_dir)
    assert proc.stdout.readline().strip() == "ready"
    stop(proc, signal.SIGKILL)  # no chance to clean up
    pid = embedded_server_pid(data_dir)
    assert pid is not None and psutil.pid_exists(pid)
    handle = connect(None, data_dir)
    handle.close()
    assert gone(pid), "an orphaned embedded server was joined and then left running"


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "reco").exists(), reason="./run.sh needs the project's .venv")
def test_run_sh_stopped_with_sigterm_leaves_no_redis_server(data_dir: Path, tmp_path: Path) -> None:
    demo = tmp_path / "shop"
    subprocess.run(
        reco("demo-data", "--out", str(demo), "--users", "60", "--items", "30", "--days", "30"), cwd=REPO, check=True
    )
    port = free_port()
    proc = spawn(
        ["./run.sh", str(demo / "events.csv"), str(demo / "items.csv")],
        data_dir,
        RECO_PORT=str(port),
        RECO_HOST="127.0.0.1",
    )
    try:
        wait_healthy(port, proc, within=180)
        pid = embedded_server_pid(data_dir)
        assert pid is not None
    finally:
        stop(proc, signal.SIGTERM)
    assert gone(pid), "./run.sh left its embedded redis-server running after SIGTERM"


@pytest.mark.parametrize("workers", [1, 2])
def test_reco_serve_on_a_taken_port_exits_with_one_sentence(data_dir: Path, workers: int) -> None:
    port = free_port()
    with socket.socket() as holder:
        # SO_REUSEPORT on the holder too: a second reco serve binding its own SO_REUSEPORT socket must still refuse.
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        proc = spawn(reco("serve", "--port", str(port), "--workers", str(workers)), data_dir)
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
    assert proc.returncode != 0
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert f"127.0.0.1:{port}" in lines[0] and "already in use" in lines[0]
    assert embedded_server_pid(data_dir) is None, "a redis-server was started for a server that could not listen"
