"""Rewrite the figure tables of docs/PERFORMANCE.md from bench/results/*.json (between <!-- bench:NAME --> markers).

Usage: python bench/report.py [--print] [--results DIR]   (--print: show the tables instead of writing the doc)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "PERFORMANCE.md"

# Goals from the issue.
P99_GOAL_MS = 5.0
THROUGHPUT_GOAL = 0.70
JOB_RATIO_GOAL = 3.0
RULES_GOAL = 0.90  # /recommend with 100 active rules keeps this share of its throughput without rules
EXPERIMENT_GOAL = 0.90  # with a control group, /recommend keeps this share of its throughput without the experiment
MEMORY_GOAL_GB = 4.0  # job and Redis together at 10M events
REDIS_BYTES_GOAL = 2048  # Redis memory per customer with every list


def _ok(flag: bool) -> str:
    return "met" if flag else "**not met**"


def _ms(x: float) -> str:
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def machine_table(job: dict | None, serving: dict | None) -> str:
    m = (job or {}).get("machine") or (serving or {}).get("machine") or {}
    v = m.get("versions", {})
    rows = [
        ("cores / memory", f"{m.get('cores')} x {m.get('cpu')} / {m.get('memory_gb')} GB"),
        ("kernel / Python", f"{m.get('kernel')} / {m.get('python')}"),
        ("libraries", ", ".join(f"{k} {val}" for k, val in v.items() if val)),
        ("load tools", (serving or {}).get("tools", "-")),
        ("Redis", (serving or {}).get("setup", {}).get("redis_version", "-")),
        (
            "runs",
            f"serving {(serving or {}).get('started', '-')}; "
            f"job {(job or {}).get('started', '-')} to {(job or {}).get('finished', '-')}",
        ),
    ]
    return "| | |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)


SERVING_NAMES = {
    "bare": "bare FastAPI constant (framework limit)",
    "bare_sync_dep": "bare constant + one no-op `def` dependency (thread-pool hop)",
    "bare_redis_get": "bare + one redis-py asyncio `GET` (framework + Redis client floor)",
    "healthz": "app `/healthz` (no Redis)",
    "recommend_known": "`/recommend` known users, near cache and kept answers warm",
    "recommend_cold": "`/recommend` cold users (bestsellers), near cache and kept answers warm",
    "next_purchase": "`/next-purchase/{id}`, near cache and kept answers warm",
    "next_purchase_batch": "`/next-purchase/batch` ({batch} customers, n=10)",
    "recommend_known_noanswers": "`/recommend` known users, kept answers off (`RECO_ANSWER_CACHE_MB=0`)",
    "next_purchase_noanswers": "`/next-purchase/{id}`, kept answers off",
    "recommend_known_nocache": "`/recommend` known users, near cache and kept answers off (both `=0`)",
    "next_purchase_nocache": "`/next-purchase/{id}`, near cache and kept answers off",
    "recommend_known_cluster": "cluster: `/recommend` known users, near cache and kept answers warm",
    "recommend_cold_cluster": "cluster: `/recommend` cold users, near cache and kept answers warm",
    "next_purchase_cluster": "cluster: `/next-purchase/{id}`, near cache and kept answers warm",
    "recommend_known_cluster_nocache": "cluster: `/recommend` known users, near cache and kept answers off",
    "next_purchase_cluster_nocache": "cluster: `/next-purchase/{id}`, near cache and kept answers off",
}
HEALTHZ_SHARE_GOAL = 0.70
P99_VS_HEALTHZ_GOAL = 1.5
CLUSTER_GOAL = 0.80


def _serving_mode_table(s: dict, mode: str) -> list[str]:
    st = s["setup"]
    out = ["| target | req/s | vs bare | vs `/healthz` | p50 ms | p95 ms | p99 ms | errors | server CPU (cores) |"]
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key, label in SERVING_NAMES.items():
        r = s["scenarios"].get(key, {}).get(mode)
        if r is None:
            continue
        extra = f" ({r['rps'] * st['batch_size']:,.0f} customers/s)" if key == "next_purchase_batch" else ""
        vs_healthz = f"{r['ratio_to_healthz']:.0%}" if "ratio_to_healthz" in r else "-"
        name = label.replace("{batch}", str(st["batch_size"]))
        out.append(
            f"| {name} | {r['rps']:,.0f}{extra} | {r['ratio_to_bare']:.0%} | "
            f"{vs_healthz} | {_ms(r['p50_ms'])} | {_ms(r['p95_ms'])} | {_ms(r['p99_ms'])} | {r['errors']} | "
            f"{r['server_cpu_cores']} |"
        )
    if mode == "saturated":
        for key, label in (
            ("redis_get", f"redis-benchmark GET, {st['median_personal_value_bytes']:,}-byte values (cache limit)"),
            ("redis_evalsha_fetch", "redis-benchmark EVALSHA of a pointer + 2 keys script (1 user + bestsellers)"),
        ):
            r = s[key]
            bare = s["scenarios"]["bare"][mode]["rps"]
            out.append(
                f"| {label} | {r['rps']:,.0f} | {r['rps'] / bare:.0%} | - | {_ms(r['p50_ms'])} | {_ms(r['p95_ms'])} | "
                f"{_ms(r['p99_ms'])} | - | - |"
            )
    return out


def _serving_goals(s: dict) -> list[str]:
    st, sc = s["setup"], s["scenarios"]
    out = ["| goal | measured | |", "|---|---|---|"]
    for key in ("recommend_known", "recommend_cold", "next_purchase"):
        if key not in sc:
            continue
        label = SERVING_NAMES[key].split(",")[0]
        for mode, conns in (("saturated_small", st.get("connections_small", 4)), ("saturated", st["connections"])):
            r, h = sc[key].get(mode), sc["healthz"].get(mode)
            if r is None or h is None:
                continue
            share = r["rps"] / h["rps"]
            out.append(
                f"| {label} throughput >= {HEALTHZ_SHARE_GOAL:.0%} of `/healthz`, {conns} connections | {share:.0%} | "
                f"{_ok(share >= HEALTHZ_SHARE_GOAL)} |"
            )
            if mode == "saturated_small":
                out.append(
                    f"| {label} p99 <= {P99_GOAL_MS:g} ms, {conns} connections | {_ms(r['p99_ms'])} ms | "
                    f"{_ok(r['p99_ms'] <= P99_GOAL_MS)} |"
                )
            else:
                bound = P99_VS_HEALTHZ_GOAL * h["p99_ms"]
                out.append(
                    f"| {label} p99 <= {P99_VS_HEALTHZ_GOAL:g}x `/healthz`'s ({_ms(bound)} ms), {conns} connections | "
                    f"{_ms(r['p99_ms'])} ms | {_ok(r['p99_ms'] <= bound)} |"
                )
    for cluster_key, single_key in (
        ("recommend_known_cluster", "recommend_known"),
        ("next_purchase_cluster", "next_purchase"),
        ("recommend_known_cluster_nocache", "recommend_known_nocache"),
        ("next_purchase_cluster_nocache", "next_purchase_nocache"),
    ):
        if cluster_key in sc and single_key in sc:
            share = sc[cluster_key]["saturated"]["rps"] / sc[single_key]["saturated"]["rps"]
            out.append(
                f"| {SERVING_NAMES[cluster_key]}: throughput >= {CLUSTER_GOAL:.0%} of one server's | {share:.0%} | "
                f"{_ok(share >= CLUSTER_GOAL)} |"
            )
    return out


def serving_tables(s: dict) -> str:
    st = s["setup"]
    out = []
    small = st.get("connections_small", 4)
    for mode, title in (
        ("saturated", f"Saturated: wrk 1 thread, {st['connections']} connections, {st['duration_s']} s per row"),
        ("saturated_small", f"Saturated: wrk 1 thread, {small} connections, {st['duration_s']} s per row"),
        (
            "paced",
            f"Paced: wrk 1 thread, {st['paced_connections']} connections, {st['pace_ms']} ms pause between a "
            f"connection's requests (about {st['paced_target_rps']:.0f} req/s offered)",
        ),
    ):
        if not any(mode in v for v in s["scenarios"].values()):
            continue
        out.append(f"**{title}**\n")
        out.extend(_serving_mode_table(s, mode))
        out.append("")
    out.extend(_serving_goals(s))
    return "\n".join(out)


def controls_table(s: dict) -> str:
    """The side-by-side comparisons of bench/controls.py: rules, and the experiment."""
    c, st = s["comparisons"], s["setup"]
    runs, ratios = c["runs"], c["ratios"]
    kinds = ", ".join(f"{v} {k}" for k, v in c["rules"]["kinds"].items())

    def median_rps(target: str) -> str:
        values = sorted(r["rps"] for r in runs[target])
        return f"{values[len(values) // 2]:,.0f}"

    def row(label: str, target: str, baseline: str, ratio: dict, goal: float | None) -> str:
        per_round = " ".join(f"{x:.0%}" for x in ratio["throughput_per_round"])
        cpu = f"{ratio['cpu_per_request']:.0%}" if ratio.get("cpu_per_request") else "-"
        verdict = f"{goal:.0%} | {_ok(ratio['throughput'] >= goal)}" if goal else "- | -"
        return (
            f"| {label} | {median_rps(target)} | {median_rps(baseline)} | **{ratio['throughput']:.0%}** ({per_round}) "
            f"| {cpu} | {verdict} |"
        )

    cal = c["calibration"]
    out = [
        f"The two servers of each comparison loaded at the same time, one wrk each (1 thread, {st['connections']} "
        f"connections), {c['rounds']} rounds, answer cache off on every server; ratios are medians over the rounds "
        f"(each round's in brackets). Rules: {kinds}.\n",
        "| comparison | req/s | baseline req/s | throughput vs baseline | CPU per request vs baseline | goal | |",
        "|---|---:|---:|---:|---:|---:|---|",
        f"| calibration: the same server twice, no rules | {cal['runs'][1]['rps']:,.0f} | {cal['runs'][0]['rps']:,.0f} "
        f"| {cal['ratio']:.0%} | - | - | - |",
        row(
            f"`/recommend` with {c['rules']['count']} active rules vs no rule",
            "recommend_rules",
            "recommend_no_rules",
            ratios["rules"],
            RULES_GOAL,
        ),
        row(
            f"`/recommend` with a control group (`RECO_CONTROL_SHARE={c['control_share']}`) vs without the experiment",
            "recommend_control_share",
            "recommend_without_experiment",
            ratios["control_share"],
            EXPERIMENT_GOAL,
        ),
        row(
            "`/recommend` by default (`rec_id` and `variant`, no control group) vs without the experiment",
            "recommend_default",
            "recommend_without_experiment_2",
            ratios["rec_id_only"],
            None,
        ),
    ]
    return "\n".join(out)


def job_tables(j: dict) -> str:
    out = []
    for d in j["datasets"]:
        job, fit, mx = d["job"], d["fit_alone"], d["matrix"]
        c = job["counts"]
        title = d["name"]
        inp = d["input"]
        src = (
            inp.get("events")
            or f"generated by {inp.get('generator')}: {inp['stats']['events']:,} events, "
            f"{inp['stats']['users']:,} users, {inp['stats']['items']:,} items"
        )
        out.append(
            f"**{title}** ({src}; {c['events']:,} events kept, matrix {mx['users']:,} users x {mx['items']:,} items, "
            f"{mx['nnz']:,} non-zeros)\n"
        )
        out.append("| stage | seconds | share | job peak RSS in stage (MB) | redis-server peak RSS in stage (MB) |")
        out.append("|---|---:|---:|---:|---:|")
        total = job["stages_total_s"]
        for s in job["stages"]:
            out.append(
                f"| {s['stage']} | {s['seconds']:.1f} | {s['seconds'] / total:.0%} | {s['peak_rss_mb']:,.0f} | "
                f"{s['redis_rss_mb']:,.0f} |"
            )
        out.append(
            f"| **job total (summary)** | **{total:.1f}** | 100% | **{job['job_vmhwm_mb']:,.0f}** (VmHWM) | "
            f"**{job['redis_vmhwm_mb']:,.0f}** (VmHWM) |"
        )
        if "peak_sum_mb" in job:
            out.append(
                "| job + redis-server RSS at the same moment (largest sampled sum) | | | "
                f"{job['peak_sum_mb']:,.0f} (sum) | |"
            )
        out.append(f"| `reco train` process wall (imports, Redis start/stop) | {job['process_wall_s']:.1f} | | | |")
        out.append(
            f"| implicit fit alone, same matrix and params | {fit['seconds']:.1f} | | {fit['peak_rss_fit_mb']:,.0f} | |"
        )
        out.append("")
        ratio = d["ratio_job_to_fit"]
        cpu_note = ""
        if "cores_used" in job and "cores_used" in fit:
            job_cpu, fit_cpu = job["cores_used"] * job["process_wall_s"], fit["cores_used"] * fit["process_wall_s"]
            cpu_note = (
                f" CPU time, less sensitive to other load: job process {job_cpu:,.0f} s (embedded Redis not included), "
                f"fit-alone process {fit_cpu:,.0f} s, {job_cpu / fit_cpu:.1f}x."
            )
        if d.get("nights") == 1:
            out.append("One night only (a fresh data dir: the gate's full fit of a first night).\n")
        if "first_night" in d:
            first = d["first_night"]
            gate = {x["stage"]: x["seconds"] for x in first["stages"]}.get("gate", 0.0)
            out.append(
                f"The table is night 2 (the gate and the ALS fit warm-start from night 1's factors: "
                f"{job.get('fit') or 'full fit'}). Night 1 (as of "
                f"{d['first_night_as_of']}, a fresh data dir, the gate's full fit: {gate:.1f} s): "
                f"{first['stages_total_s']:.1f} s, **{d['ratio_first_night_to_fit']:.2f}x** the fit alone; peak "
                f"{first['job_vmhwm_mb']:,.0f} MB (job), {first.get('peak_sum_mb', 0):,.0f} MB (job + Redis at once). "
                f"Other load during night 1: {first.get('other_load_cores', '?')} cores.\n"
            )
        out.append(
            f"Ratio job / fit alone: **{ratio:.2f}x** (process wall / fit: {d['ratio_process_to_fit']:.2f}x; "
            "the job's own fit "
            f"stage / fit alone: {d['ratio_fit_stage_to_fit_alone']:.2f}x{_full_fit_note(d)}). Other load on the "
            "machine meanwhile: "
            f"{job.get('other_load_cores', '?')} cores during the job (includes its embedded redis-server), "
            f"{fit.get('other_load_cores', '?')} during the fit alone.{cpu_note}\n"
        )
    out.append("| goal | measured | |\n|---|---|---|")
    for d in j["datasets"]:
        night = " (nightly: night 2, warm gate)" if "first_night" in d else ""
        night = " (first night only: the gate's full fit)" if d.get("nights") == 1 else night
        verdict = _ok(d["ratio_job_to_fit"] <= JOB_RATIO_GOAL)
        skew = d.get("ratio_full_fit_stage_to_fit_alone") or d["ratio_fit_stage_to_fit_alone"]
        if not 0.8 <= skew <= 1.25 and d["ratio_job_to_fit"] <= JOB_RATIO_GOAL:
            verdict = f"**not shown**: the job's own full fit took {skew:.2f}x the fit alone (other load moved)"
        out.append(
            f"| {d['name']}: whole job <= {JOB_RATIO_GOAL:g}x fit alone{night} | {d['ratio_job_to_fit']:.2f}x "
            f"| {verdict} |"
        )
        if "first_night" in d:
            out.append(
                f"| {d['name']}: same, first night (full gate fit) | {d['ratio_first_night_to_fit']:.2f}x | "
                f"{_ok(d['ratio_first_night_to_fit'] <= JOB_RATIO_GOAL)} |"
            )
    generated = [d for d in j["datasets"] if d["name"].startswith("generated")]
    for d in j["datasets"]:
        per = redis_bytes_per_customer(d)
        if per is not None:
            out.append(
                f"| {d['name']}: Redis memory per customer with every list <= {REDIS_BYTES_GOAL:,} bytes | "
                f"{per:,.0f} bytes | {_ok(per <= REDIS_BYTES_GOAL)} |"
            )
    big = max(generated, key=lambda d: d["job"]["counts"]["events"], default=None)
    if big:
        runs = [big["job"], *([big["first_night"]] if "first_night" in big else [])]
        size = f"{big['job']['counts']['events'] / 1e6:.0f}M-event run (largest measured; either night)"
        job_gb = max(r["job_vmhwm_mb"] for r in runs) / 1024
        both_gb = max(r["job_vmhwm_mb"] + r["redis_vmhwm_mb"] for r in runs) / 1024
        out.append(
            f"| {size} under {MEMORY_GOAL_GB:g} GB (job process peak) | {job_gb:.1f} GB | "
            f"{_ok(job_gb < MEMORY_GOAL_GB)} |"
        )
        out.append(
            f"| same, job + its embedded Redis (sum of the two peaks) | {both_gb:.1f} GB | "
            f"{_ok(both_gb < MEMORY_GOAL_GB)} |"
        )
        if all("peak_sum_mb" in r for r in runs):
            at_once_gb = max(r["peak_sum_mb"] for r in runs) / 1024
            out.append(
                f"| same, job + its embedded Redis at the same moment | {at_once_gb:.1f} GB | "
                f"{_ok(at_once_gb < MEMORY_GOAL_GB)} |"
            )
    return "\n".join(out)


def redis_bytes_per_customer(d: dict) -> float | None:
    """Redis used_memory after the run over the customers the model knows (one version in a fresh Redis: the first
    night when two were run, as night 2 keeps night 1's version for rollback)."""
    run = d.get("first_night", d["job"])
    used, users = run.get("redis_used_memory_mb"), run["counts"].get("users")
    return used * 2**20 / users if used and users else None


def _peak_at_once(d: dict) -> float:
    """The largest job + Redis RSS sampled at one moment, over both nights when two were run."""
    return max(r.get("peak_sum_mb", 0.0) for r in [d["job"], *([d["first_night"]] if "first_night" in d else [])])


def growth_table(j: dict) -> str:
    """Time and peak memory of the generated shops by size, with the growth exponent fitted on a log-log scale."""
    import math

    rows = sorted(
        (d for d in j["datasets"] if d["name"].startswith("generated")), key=lambda d: d["job"]["counts"]["events"]
    )
    if len(rows) < 2:
        return "(needs at least two generated shops in bench/results/job.json)"
    out = [
        "| events | customers | nightly job (s) | fit alone (s) | job / fit | job peak RSS (MB) | Redis peak RSS (MB) "
        "| job + Redis at once (MB) | Redis used memory per customer (bytes) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for d in rows:
        job, c = d["job"], d["job"]["counts"]
        runs = [job, *([d["first_night"]] if "first_night" in d else [])]
        out.append(
            f"| {c['events']:,} | {c['users']:,} | {job['stages_total_s']:.1f} | {d['fit_alone']['seconds']:.1f} | "
            f"{d['ratio_job_to_fit']:.2f}x{' (first night only)' if d.get('nights') == 1 else ''} | "
            f"{max(r['job_vmhwm_mb'] for r in runs):,.0f} | "
            f"{max(r['redis_vmhwm_mb'] for r in runs):,.0f} | {_peak_at_once(d):,.0f} | "
            f"{redis_bytes_per_customer(d) or 0:,.0f} |"
        )

    def exponent(values: list[float]) -> float:
        xs = [math.log(d["job"]["counts"]["events"]) for d in rows]
        ys = [math.log(v) for v in values]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)

    fits = {
        "job time": exponent([d["job"]["stages_total_s"] for d in rows]),
        "fit alone": exponent([d["fit_alone"]["seconds"] for d in rows]),
        "job + Redis peak memory (at once)": exponent([_peak_at_once(d) or 1.0 for d in rows]),
    }
    out.append("")
    out.append("Peaks are the larger of the two nights (night 2 also holds night 1's version in Redis).")
    out.append(
        "Growth exponent b in cost = a x events^b (least squares on log-log, "
        + ", ".join(f"{name}: **{b:.2f}**" for name, b in fits.items())
        + ")."
    )
    return "\n".join(out)


def ingest_table(i: dict) -> str:
    lat = i["batch_latency_ms"]
    return "\n".join(
        [
            "| batch size | client threads | duration | batches | errors | events/s | batch p50 ms | p95 ms | p99 ms "
            "| durability |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            f"| {i['batch_size']} | {i['threads']} | {i['seconds']} s | {i['batches']:,} | {i['errors']} "
            f"| **{i['events_per_second']:,}** "
            f"| {_ms(lat['p50'])} | {_ms(lat['p95'])} | {_ms(lat['p99'])} | {i['durability']} |",
        ]
    )


def replace(doc: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- bench:{name} -->\n).*?(<!-- /bench:{name} -->)", re.S)
    if not pattern.search(doc):
        raise SystemExit(f"docs/PERFORMANCE.md has no <!-- bench:{name} --> ... <!-- /bench:{name} --> markers")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), doc)


def _full_fit_note(d: dict) -> str:
    """The machine check when night 2's fit was a warm start: a full fit of the same run against the fit alone."""
    full = d.get("ratio_full_fit_stage_to_fit_alone")
    if full is None or full == d["ratio_fit_stage_to_fit_alone"]:
        return ""
    return f"; night 1's full fit / fit alone: {full:.2f}x"


def main() -> None:
    global RESULTS
    if "--results" in sys.argv:
        RESULTS = Path(sys.argv[sys.argv.index("--results") + 1])
    job = json.loads((RESULTS / "job.json").read_text()) if (RESULTS / "job.json").exists() else None
    serving = json.loads((RESULTS / "serving.json").read_text()) if (RESULTS / "serving.json").exists() else None
    ingest = json.loads((RESULTS / "ingest.json").read_text()) if (RESULTS / "ingest.json").exists() else None
    parts = {"machine": machine_table(job, serving)}
    if ingest:
        parts["ingest"] = ingest_table(ingest)
    if serving:
        parts["serving"] = serving_tables(serving)
        if "comparisons" in serving:
            parts["controls"] = controls_table(serving)
    if job:
        parts["job"] = job_tables(job)
        parts["growth"] = growth_table(job)
    if "--print" in sys.argv:
        print("\n\n".join(parts.values()))
        return
    doc = DOC.read_text()
    for name, body in parts.items():
        doc = replace(doc, name, body)
    DOC.write_text(doc)
    print(f"updated {DOC.relative_to(ROOT)} ({', '.join(parts)})")


if __name__ == "__main__":
    main()
