"""Redis memory per customer after one `reco train`: the whole version, and per kind of key.

Trains (in-process, the real job, gate off so only one version's keys are measured) into a fresh embedded Redis and
reads ``used_memory`` before and after publishing, plus ``MEMORY USAGE`` of a sample of keys of every kind
(``user:``, ``next:``, ``seg:``, ``sim:``, ...). Per customer = the version's memory / users the model knows.

Usage:
  python bench/redis_memory.py --demo [--out bench/results/redis_memory_demo.json]
  python bench/redis_memory.py --events shop/events.parquet --items shop/items.parquet [--format generic]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from collections import defaultdict
from pathlib import Path

from cache.keys import Keys
from cache.server import connect
from recommender.config import load_settings
from recommender.data.demo import generate_shop
from training.job import JobConfig, run_job


def kind_of(suffix: str) -> str:
    return suffix.split(":", 1)[0] if ":" in suffix else suffix


def measure(events: Path, items: Path | None, fmt: str, active_days: int | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        handle = connect(None, Path(tmp) / "redis")
        client = handle.client
        client.config_set("appendonly", "no")  # memory only; the file would just slow the run down
        before = client.info("memory")["used_memory"]
        settings = load_settings({"redis": {"data_dir": Path(tmp) / "redis", "key_prefix": "m"}})
        cfg = JobConfig(events=events, items=items, fmt=fmt, settings=settings, show_progress=False)
        result = run_job(cfg, client)
        after = client.info("memory")["used_memory"]
        keys = Keys("m")
        base = keys.version_prefix(result.version)
        names: dict[str, list[bytes]] = defaultdict(list)
        count: dict[str, int] = defaultdict(int)
        for key in client.scan_iter(match=base + "*", count=10_000):
            kind = kind_of(key.decode()[len(base) :])
            count[kind] += 1
            if len(names[kind]) < 2000 or random.random() < 0.01:
                names[kind].append(key)
        kinds = {}
        for kind, sample in sorted(names.items()):
            sizes = [client.memory_usage(k, samples=0) or 0 for k in sample]
            kinds[kind] = {"keys": count[kind], "mean_bytes": round(sum(sizes) / len(sizes), 1)}
        users = result.counts["users"]
        out = {
            "events": result.counts["events"],
            "users": users,
            "items": result.counts["items"],
            "counts": result.counts,
            "used_memory_bytes": after - before,
            "bytes_per_customer": round((after - before) / max(users, 1), 1),
            "kinds": kinds,
            "seconds": result.seconds,
        }
        handle.close()
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", action="store_true", help="the demo shop of ./run.sh (reco demo-data defaults)")
    ap.add_argument("--events", type=Path)
    ap.add_argument("--items", type=Path)
    ap.add_argument("--format", default="generic")
    ap.add_argument("--active-days", type=int, default=None)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.demo:
            shop = generate_shop()
            shop.write(Path(tmp))
            events, items = Path(tmp) / "events.csv", Path(tmp) / "items.csv"
        else:
            events, items = args.events, args.items
        result = measure(events, items, args.format, args.active_days)
    result["dataset"] = "demo" if args.demo else str(args.events)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
