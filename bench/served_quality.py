"""What a new shop gets out of the box: `reco train` with its defaults, then /recommend asked for every warm customer.

The protocol of the out-of-the-box goal (docs/QUALITY.md): the events before the cut-off (newest event - test days)
are written to a fresh folder without a settings file, `reco train` runs there on an embedded Redis (so it tunes
itself and decides on its blend as a new shop's first night does), `reco serve` answers, and the served
`/recommend?n=10` of every warm customer who bought in the test window is scored on what they bought: recall@10 and
NDCG@10, paired per customer with personal top frequency and TIFU-KNN (the paper's Ta-Feng and Dunnhumby settings)
fitted on the same events. The goal: at least 5 % above the better of them on both.

Usage: python bench/served_quality.py --events E [--items I] [--format F] [--test-days 28] [--last-days N]
       [--workdir DIR] [--out bench/results/served_quality.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recommender.config import ModelSettings
from recommender.data.dataset import load_dataset
from recommender.data.errors import DataError
from recommender.evaluation import metrics
from recommender.evaluation.protocol import build_context, fit_models, model_lists
from recommender.evaluation.split import last_days

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ("personal_top_frequency", "tifu_knn", "tifu_knn_dunnhumby")
K = 10


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=Path, required=True)
    ap.add_argument("--items", type=Path)
    ap.add_argument("--format", default="generic")
    ap.add_argument("--test-days", type=int, default=28)
    ap.add_argument("--last-days", type=int, help="keep only the log's last N days (a shorter history)")
    ap.add_argument("--workdir", type=Path, help="the shop's folder, new or empty (default: a temporary one)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    try:
        data = load_dataset(args.events, args.items, args.format, 0.05)
    except DataError as exc:
        sys.exit(str(exc))
    events = data.events
    if args.last_days:
        events = last_days(events, args.last_days)
    ctx = build_context(events, data.items, test_days=args.test_days, targets=("purchase",), ks=(K,))
    truth = ctx.truth["purchase"]
    users = [u for u in ctx.users_to_score() if truth.get(u)]
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="served-quality-"))
    if folder.exists() and any(folder.iterdir()):
        sys.exit(f"{folder} is not empty: the protocol is a new shop's first night, in a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    night = _train(folder, ctx.split.train, data.items)
    trained = time.perf_counter() - started
    served, sources = _ask(folder, users)
    fitted, _ = fit_models(ctx, ModelSettings(), list(BASELINES))
    lists = {"served": served, **{b: model_lists(ctx, fitted[b])["warm"] for b in BASELINES}}
    scores = {name: _per_user(got, truth, users) for name, got in lists.items()}
    report: dict[str, Any] = {
        "source": {"events": args.events.name, "format": args.format, "last_days": args.last_days},
        "cutoff": ctx.split.cutoff.isoformat(),
        "test_days": args.test_days,
        "customers": len(users),
        "sources": sources,
        "train_seconds": round(trained, 1),
        "night": night,
        "figures": {n: {f"{m}@{K}": round(float(v.mean()), 4) for m, v in s.items()} for n, s in scores.items()},
        "served_against": {b: _against(scores["served"], scores[b]) for b in BASELINES},
    }
    _print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


def _train(folder: Path, train: pa.Table, items: pa.Table) -> dict[str, Any]:
    """`reco train` on ``train`` in ``folder`` (no settings file there), its own embedded Redis under it; what the
    published version's manifest (`reco status --json`) says of its settings, blend, gate and stage times."""
    from training.blend_step import describe as describe_blend
    from training.self_tune import describe

    pq.write_table(train, folder / "events.parquet")
    pq.write_table(items, folder / "items.parquet")
    _run(folder, ["train", "--events", "events.parquet", "--items", "items.parquet", "--no-progress"])
    published = json.loads(_run(folder, ["status", "--json"]))["current"]
    if not published:
        sys.exit("reco train published no version")
    gate = published.get("evaluation") or {}
    return {
        "version": published["version"],
        "settings": describe(published.get("tuned")),
        "learned blend": describe_blend(published.get("blend")),
        "promotion gate": str(gate.get("decision") or gate.get("skipped")),
        "seconds": {stage: round(s, 2) for stage, s in published.get("seconds", {}).items()},
    }


def _run(folder: Path, args: list[str]) -> str:
    """A `reco` command in the shop's folder; its standard output, or the bench stops with what it printed."""
    done = subprocess.run(_reco(args), cwd=folder, env=_env(folder), capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"reco {args[0]} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def _ask(folder: Path, users: list[str]) -> tuple[dict[str, list[str]], dict[str, int]]:
    """`reco serve` on the folder's Redis; /recommend?n=10 of every customer in ``users``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        _reco(["serve", "--port", str(port)]),
        cwd=folder,
        env=_env(folder),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, server)
        lists: dict[str, list[str]] = {}
        sources: dict[str, int] = {}
        for u in users:
            with urllib.request.urlopen(f"{base}/recommend?user_id={urllib.parse.quote(u)}&n={K}") as resp:
                body = json.load(resp)
            lists[u] = [e["item_id"] for e in body["items"]]
            sources[body["source"]] = sources.get(body["source"], 0) + 1
        return lists, sources
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_ready(base: str, server: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"reco serve exited with {server.returncode}")
        try:
            urllib.request.urlopen(f"{base}/readyz", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    sys.exit("reco serve did not get ready")


def _reco(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "training.cli", *args]


def _env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECO_") and k != "REDIS_URL"}
    env["RECO_DATA_DIR"] = str(folder / "data")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _per_user(lists: dict[str, list[str]], truth: dict[str, set[str]], users: list[str]) -> dict[str, np.ndarray]:
    return {m: metrics.per_user(m, lists, truth, K, users) for m in ("recall", "ndcg")}


def _against(served: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    return {f"{m}@{K}": metrics.relative_gain(served[m], other[m]) for m in ("recall", "ndcg")}


def _print(report: dict[str, Any]) -> None:
    print(f"cut-off {report['cutoff']}, {report['test_days']} test days, {report['customers']:,} warm customers")
    for key, value in report["night"].items():
        print(f"  {key}: {value}")
    print(f"  /recommend sources: {report['sources']}; reco train {report['train_seconds']} s")
    for name, figures in report["figures"].items():
        print(f"{name:24s} recall@{K} {figures[f'recall@{K}']:.4f}  ndcg@{K} {figures[f'ndcg@{K}']:.4f}")
    for name, gains in report["served_against"].items():
        shown = "  ".join(f"{m} {100 * g['gain']:+.1f} % ± {100 * g['stderr']:.1f}" for m, g in gains.items())
        print(f"served vs {name:24s} {shown}")


if __name__ == "__main__":
    main()
