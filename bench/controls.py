"""What merchandising rules and the experiment cost `/recommend`, measured in one run of bench/serving.py.

Each comparison loads its two servers at the same time, with the same requests (every known user in turn,
``n=10``) and one wrk per server (saturated, --connections each): on a machine shared with other work, load that
comes and goes then falls on both sides alike, and each server gets the same share of the cores, so the ratio of
their throughputs is the inverse ratio of what a request costs each. The servers:

- ``recommend_no_rules`` (``recommend_default`` beside the experiment's baseline): ``reco serve`` as configured by
  default (no rule; every answer has ``rec_id`` and ``variant``, no control group: ``RECO_CONTROL_SHARE`` 0);
- ``recommend_rules``: the same on a second key prefix (the same shop trained again), where ``RULES`` active rules
  are put through ``PUT /rules`` (a mix of boosts, buries, excludes and pins over the shop's items and categories);
  before they are put, the two run once side by side as a calibration (the same code on both sides: about 1.0);
- ``recommend_control_share``: ``reco serve`` with ``RECO_CONTROL_SHARE=0.1`` (one visitor in ten gets
  bestsellers);
- ``recommend_without_experiment``: the same code with the experiment's work per request taken out
  (bench/app_without_experiment.py: no variant drawn, no ``rec_id`` made, neither in the answer), which is what
  ``/recommend`` did before recommendation ids existed.

No server keeps answers (``RECO_ANSWER_CACHE_MB=0``; see :func:`compare`). Each round runs the three pairs (the
rules; the control group; ids and variants alone), which wrk starts first changing every round; each ratio is the
median over rounds, of throughput and of server CPU time per request. The goals: with the rules, at least 90% of
the throughput without them; with the control group, less than 10% below the service without the experiment.
"""

from __future__ import annotations

import csv
import json
import random
import statistics
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

RULES = 100
CONTROL_SHARE = 0.1
API_KEY = "bench-write-key"
RULES_PREFIX = "reco-rules"
TARGETS = (
    "recommend_no_rules",
    "recommend_rules",
    "recommend_without_experiment",
    "recommend_control_share",
    "recommend_without_experiment_2",
    "recommend_default",
)


def rule_set(items: list[tuple[str, str]], count: int = RULES, seed: int = 7) -> dict[str, dict[str, Any]]:
    """``count`` rules over the shop's (item id, category) pairs: 30% boosts and 30% buries (one in six by category,
    the others naming 3-6 items), 28% excludes (one by category), 12% pins (a quarter of them on ``recommend``, at
    positions 2, 5 and 8); a third of the rules have a time window around now, some apply to a few list kinds."""
    rng = random.Random(seed)
    categories = sorted({c for _, c in items if c})
    ids = [i for i, _ in items]
    now = datetime.now(timezone.utc)
    n_boost = n_bury = round(count * 0.3)
    n_pin = round(count * 0.12)
    kinds = ["boost"] * n_boost + ["bury"] * n_bury + ["pin"] * n_pin
    kinds += ["exclude"] * (count - len(kinds))
    excluded_category = categories[-1]
    pinned = rng.sample([i for i, c in items if c != excluded_category], n_pin)  # pins that excludes leave alone
    ids = [i for i in ids if i not in set(pinned)]
    rules: dict[str, dict[str, Any]] = {}
    pins_on_recommend = iter([2, 5, 8])
    for k, kind in enumerate(kinds):
        body: dict[str, Any] = {"kind": kind}
        if kind == "pin":
            position = next(pins_on_recommend, None)
            others = ["bestsellers", "similar", "new_arrivals", "next_purchase"]
            lists = ["recommend"] if position else [rng.choice(others)]
            body.update(item_id=pinned.pop(), position=position or rng.randint(1, 10), lists=lists)
        elif kind == "exclude" and k == len(kinds) - 1:
            body["category"] = excluded_category
        elif kind in ("boost", "bury") and k % 6 == 0:
            body["category"] = rng.choice(categories[:-1])
        else:
            body["item_ids"] = rng.sample(ids, rng.randint(3, 6))
        if kind == "boost":
            body["factor"] = rng.choice([1.5, 2.0, 3.0])
        elif kind == "bury":
            body["factor"] = rng.choice([0.25, 0.5, 0.75])
        if k % 3 == 0:
            body["starts"] = (now - timedelta(days=1)).isoformat()
            body["ends"] = (now + timedelta(days=30)).isoformat()
        if kind != "pin" and k % 5 == 0:
            body["lists"] = ["recommend", "similar"]
        rules[f"bench-{kind}-{k:03d}"] = body
    return rules


def shop_items(items_csv: Path) -> list[tuple[str, str]]:
    with open(items_csv, newline="") as f:
        return [(row["item_id"], row.get("category") or "") for row in csv.DictReader(f)]


def _call(method: str, url: str, body: dict | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
    with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method), timeout=10) as r:
        return json.loads(r.read())


def put_rules(base: str, rules: dict[str, dict[str, Any]], user: str) -> None:
    """Put every rule, then wait until every worker answers with them (the pins on ``recommend`` in place)."""
    for name, body in rules.items():
        _call("PUT", f"{base}/rules/{name}", body)
    pins = {b["position"]: b["item_id"] for b in rules.values() if b["kind"] == "pin" and b["lists"] == ["recommend"]}
    end = time.time() + 30
    streak = 0
    while streak < 20:
        if time.time() > end:
            raise SystemExit("the rules did not come into force within 30 s")
        items = [e["item_id"] for e in _call("GET", f"{base}/recommend?user_id={user}&n=10")["items"]]
        streak = streak + 1 if all(items[p - 1] == i for p, i in pins.items() if p <= len(items)) else 0
    if len(_call("GET", f"{base}/rules")) != len(rules):
        raise SystemExit("not every rule was stored")


def compare(
    measure: Callable[[list[tuple[int, int]]], list[dict]],
    start: Callable[[str, dict], tuple[int, int]],
    train: Callable[[dict], None],
    env: dict[str, str],
    items_csv: Path,
    user: str,
    rounds: int,
) -> dict[str, Any]:
    """Run both comparisons ``rounds`` times. ``measure(servers)`` loads the (port, pid) servers at once and returns
    one wrk result each; ``start(app_factory, env)`` starts a server (``reco serve`` for an empty factory) and
    returns (port, pid); ``train(env)`` publishes the shop with ``env``; ``env`` has ``API_KEY`` as write key.

    Every server keeps no answers (``RECO_ANSWER_CACHE_MB=0``): a kept answer is sent again without running the
    rules or drawing a variant, so with it the comparisons would measure the answer cache."""
    env = {**env, "RECO_ANSWER_CACHE_MB": "0"}
    train({**env, "RECO_KEY_PREFIX": RULES_PREFIX})
    plain = start("", env)
    ruled = start("", {**env, "RECO_KEY_PREFIX": RULES_PREFIX})
    without = start("app_without_experiment:create_app", env)
    control = start("", {**env, "RECO_CONTROL_SHARE": str(CONTROL_SHARE)})
    _check_tags(plain, without, control, user)
    print("[serving] calibration: the same server twice, no rules", flush=True)
    calibration = measure([plain, ruled])
    rules = rule_set(shop_items(items_csv))
    put_rules(f"http://127.0.0.1:{ruled[0]}", rules, user)
    pairs = (
        (("recommend_no_rules", plain), ("recommend_rules", ruled)),
        (("recommend_without_experiment", without), ("recommend_control_share", control)),
        (("recommend_without_experiment_2", without), ("recommend_default", plain)),
    )
    runs: dict[str, list[dict]] = {t: [] for t in TARGETS}
    for k in range(rounds):
        for pair in pairs:
            pair = pair if k % 2 == 0 else pair[::-1]  # which wrk starts first changes every round
            print(f"[serving] round {k + 1}/{rounds}: {pair[0][0]} | {pair[1][0]}", flush=True)
            for (target, _), found in zip(pair, measure([server for _, server in pair])):
                runs[target].append(found)
    return {
        "rounds": rounds,
        "answer_cache_mb": 0,
        "rules": {"count": len(rules), "kinds": _kinds(rules), "examples": dict(list(rules.items())[::17])},
        "control_share": CONTROL_SHARE,
        "calibration": {"runs": calibration, "ratio": round(calibration[1]["rps"] / calibration[0]["rps"], 3)},
        "runs": runs,
        "ratios": {
            "rules": _median_ratio(runs["recommend_rules"], runs["recommend_no_rules"]),
            "control_share": _median_ratio(runs["recommend_control_share"], runs["recommend_without_experiment"]),
            "rec_id_only": _median_ratio(runs["recommend_default"], runs["recommend_without_experiment_2"]),
        },
    }


def _check_tags(plain: tuple[int, int], without: tuple[int, int], control: tuple[int, int], user: str) -> None:
    """The servers answer as their names say: ids and variants by default, none without the experiment."""
    for (port, _), tagged in ((plain, True), (without, False), (control, True)):
        answer = _call("GET", f"http://127.0.0.1:{port}/recommend?user_id={user}&n=10")
        if ("rec_id" in answer and "variant" in answer) != tagged or not answer["items"]:
            raise SystemExit(f"the server on port {port} does not answer as expected: {sorted(answer)}")


def _kinds(rules: dict[str, dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for body in rules.values():
        key = f"{body['kind']} by {'category' if 'category' in body else 'item'}"
        out[key] = out.get(key, 0) + 1
    return out


def _median_ratio(runs: list[dict], baseline: list[dict]) -> dict[str, Any]:
    """Throughput and CPU per request of ``runs`` over ``baseline``, round by round, and their medians."""
    rps = [round(r["rps"] / b["rps"], 3) for r, b in zip(runs, baseline)]
    cpu = [round(_cpu_us(r) / _cpu_us(b), 3) for r, b in zip(runs, baseline) if _cpu_us(r) and _cpu_us(b)]
    return {
        "throughput": round(statistics.median(rps), 3),
        "throughput_per_round": rps,
        "cpu_per_request": round(statistics.median(cpu), 3) if cpu else None,
        "cpu_per_request_per_round": cpu,
    }


def _cpu_us(run: dict) -> float | None:
    """Server CPU microseconds per answered request."""
    cores = run.get("server_cpu_cores")
    return cores / run["rps"] * 1e6 if cores and run["rps"] else None
