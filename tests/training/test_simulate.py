"""`reco simulate` end to end: a generated shop driven over HTTP against `reco serve`, the job, and the report."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_reco_simulate_against_a_running_api_writes_the_measured_and_the_true_lift(redis_handle, tmp_path: Path):
    port = free_port()
    env = {
        **os.environ,
        "RECO_DATA_DIR": str(redis_handle.data_dir or tmp_path),
        "RECO_KEY_PREFIX": f"sim{uuid.uuid4().hex[:8]}",
        "RECO_LIVE_ARCHIVE_DIR": str(tmp_path / "live"),
        "RECO_API_KEY": "write-key",
        "RECO_CONTROL_SHARE": "0.5",
        "RECO_EXPERIMENT_SALT": "simtest",
    }
    if redis_handle.url:
        env["REDIS_URL"] = redis_handle.url
    server = subprocess.Popen(
        [sys.executable, "-m", "training.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                    break
            except OSError:
                assert time.time() < deadline and server.poll() is None, "the API did not start"
                time.sleep(0.2)
        out = tmp_path / "sim.json"
        args = ["--url", url, "--days", "3", "--customers", "300", "--uplift", "0.5", "--control-share", "0.5"]
        run = subprocess.run(
            [sys.executable, "-m", "training.cli", "simulate", *args, "--seed", "1", "--json", str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stdout + run.stderr
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    result = json.loads(out.read_text())
    assert result["uplift"] == 0.5 and result["metric"] == "repeat_purchase_rate"
    assert result["true_lift"] > 0
    assert all(math.isfinite(result[k]) for k in ("lift", "ci_low", "ci_high"))
    assert result["ci_low"] <= result["lift"] <= result["ci_high"]
    assert result["customers"]["control"] > 100 and result["customers"]["treatment"] > 100  # only simulated ones
    assert result["customers"]["control"] + result["customers"]["treatment"] == 300
