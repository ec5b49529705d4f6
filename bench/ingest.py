"""Ingestion rate of POST /events: events per second in batches of 100, against a real `reco serve` on loopback.

The API runs in its own process on an embedded Redis (append-only file, appendfsync always: every batch is on disk
before it is acknowledged). Several client threads post batches for a fixed time.

    python bench/ingest.py [--seconds 10] [--threads 4] [--batch 100] [--out bench/results/ingest.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ingest.json")
    args = ap.parse_args()
    reco = [sys.executable, "-m", "training.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "RECO_DATA_DIR": tmp, "RECO_API_KEY": KEY}
        env.pop("REDIS_URL", None)
        subprocess.run(
            reco + ["demo-data", "--out", f"{tmp}/shop", "--users", "500", "--items", "200"],
            env=env,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            reco + ["train", "--events", f"{tmp}/shop/events.csv", "--items", f"{tmp}/shop/items.csv", "--no-progress"],
            env=env,
            check=True,
            capture_output=True,
        )
        port = free_port()
        server = subprocess.Popen(
            reco + ["serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(base + "/readyz", timeout=1)
                    break
                except Exception:
                    time.sleep(0.1)
            latencies: list[float] = []
            errors = 0
            lock = threading.Lock()
            deadline = time.monotonic() + args.seconds

            def worker(k: int) -> None:
                nonlocal errors
                i = 0
                while time.monotonic() < deadline:
                    events = [
                        {
                            "user_id": f"bench-{k}-{(i + j) % 997}",
                            "item_id": f"I{(i * 7 + j) % 200 + 1:05d}",
                            "event_type": "view",
                        }
                        for j in range(args.batch)
                    ]
                    body = json.dumps({"events": events}).encode()
                    req = urllib.request.Request(
                        base + "/events", data=body, headers={"content-type": "application/json", "X-API-Key": KEY}
                    )
                    start = time.perf_counter()
                    try:
                        with urllib.request.urlopen(req, timeout=10) as r:
                            ok = r.status == 200
                    except Exception:
                        ok = False
                    with lock:
                        latencies.append(time.perf_counter() - start)
                        errors += not ok
                    i += args.batch

            started = time.monotonic()
            threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.threads)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.monotonic() - started
        finally:
            server.terminate()
            server.wait(10)
    batches = len(latencies) - errors
    q = statistics.quantiles(latencies, n=100)
    result = {
        "batch_size": args.batch,
        "threads": args.threads,
        "seconds": round(elapsed, 2),
        "batches": batches,
        "errors": errors,
        "events_per_second": round(batches * args.batch / elapsed),
        "batch_latency_ms": {
            "p50": round(q[49] * 1000, 2),
            "p95": round(q[94] * 1000, 2),
            "p99": round(q[98] * 1000, 2),
        },
        "durability": "embedded Redis, appendonly yes, appendfsync always",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
