"""``reco simulate``: drive a generated shop with a known uplift against a running API and compare the lift the
service measures with the true one (docs/EXPERIMENTS.md).

The simulator talks to the API over HTTP (``--url``) for everything a shop does: ``GET /recommend`` per visit and
``POST /events`` for impressions, clicks and purchases. The nightly job runs in this process (``run_job``) against
the same Redis as the API: REDIS_URL (or RECO_DATA_DIR for the embedded server), RECO_KEY_PREFIX and
RECO_EXPERIMENT_SALT must be the API's. It trains on a small generated demo shop, written to a temporary folder and
dated before the report window, plus the live events the simulator sent.
"""

from __future__ import annotations

import tempfile
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from training.console import fail, out
from training.train_cli import DataDir, RedisUrl

Opt = typer.Option


class ApiError(Exception):
    """The API refused a request or could not be reached."""


def _call(url: str, body: Any = None, api_key: str | None = None) -> Any:
    """GET (or POST ``body`` as JSON) and decode the JSON answer."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if api_key:
        headers["X-API-Key"] = api_key
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return orjson.loads(answer.read())
    except urllib.error.HTTPError as e:
        raise ApiError(f"{request.method} {url}: HTTP {e.code}: {e.read()[:500].decode(errors='replace')}") from e
    except OSError as e:
        raise ApiError(f"{request.method} {url}: {e}") from e


def _post_events(url: str, events: list[dict[str, Any]], api_key: str | None, batch: int = 500) -> None:
    for at in range(0, len(events), batch):
        rows = [{**e, "timestamp": e["timestamp"].isoformat()} for e in events[at : at + batch]]
        _call(f"{url}/events", {"events": rows}, api_key)


def _simulate_days(url: str, p: Any, first_item: str, seed: int, api_key: str | None, now: datetime) -> None:
    """Every simulated day: each visiting customer asks for recommendations and sends what happened."""
    from recommender.marketing import simulation as sim

    users = [f"sim{seed}-{k}" for k in range(p.params.customers)]
    first = now - timedelta(days=p.params.days + 1)
    _post_events(url, [sim.first_purchase(u, first_item, first) for u in users], api_key)
    for day in range(p.params.days):
        at = now - timedelta(days=p.params.days - day)  # day d is D - d days ago: never in the future
        batch: list[dict[str, Any]] = []
        for k in map(int, p.visits[:, day].nonzero()[0]):
            query = urllib.parse.urlencode({"user_id": users[k], "n": p.params.shown})
            answer = _call(f"{url}/recommend?{query}", api_key=api_key)
            items = [i["item_id"] for i in answer["items"]]
            if len(items) < p.params.shown:
                raise ApiError(
                    f"/recommend gave {len(items)} items for {users[k]}, the simulation needs {p.params.shown}"
                )
            batch += sim.visit_events(p, k, day, users[k], answer["variant"], items, answer["rec_id"], at)
        _post_events(url, batch, api_key)
        out.print(f"day {day + 1}/{p.params.days}: {len(batch):,} events sent")


def _run_job(events: Path, items: Path, settings: Any) -> None:
    from cache.server import connect
    from training.job import JobConfig, run_job

    handle = connect(settings.redis.url, settings.redis.data_dir)
    try:
        run_job(JobConfig(events=events, items=items, settings=settings, show_progress=False), handle.client)
    finally:
        handle.close()


def simulate(
    url: Annotated[str, Opt("--url", help="Base URL of the running API, e.g. http://127.0.0.1:8000.")],
    days: Annotated[int, Opt("--days", min=1, help="Simulated days (the last one ends now).")] = 7,
    uplift: Annotated[float, Opt("--uplift", min=0, help="Relative uplift of the chance to buy in treatment.")] = 0.2,
    control_share: Annotated[
        float, Opt("--control-share", min=0.01, max=0.99, help="The API's RECO_CONTROL_SHARE (checked).")
    ] = 0.5,
    seed: Annotated[int, Opt("--seed", help="Random seed (also names the simulated customers).")] = 0,
    json_out: Annotated[Path, Opt("--json", help="Where to write the result (JSON).")] = Path("simulation.json"),
    customers: Annotated[int, Opt("--customers", min=10, help="Simulated customers.")] = 1000,
    api_key: Annotated[str | None, Opt("--api-key", envvar="RECO_API_KEY", help="Write key for POST /events.")] = None,
    redis_url: RedisUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Drive a generated shop with a known uplift against a running API, run the nightly job, and write the lift
    of the repeat-purchase rate the service measured next to the true one."""
    url = url.rstrip("/")
    try:
        result = _simulate(url, days, uplift, control_share, seed, customers, api_key, redis_url, data_dir)
    except ApiError as e:
        fail(str(e))
    json_out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    out.print(
        f"true lift {result['true_lift']:+.1%}; measured {_pct(result['lift'])} "
        f"[{_pct(result['ci_low'])}, {_pct(result['ci_high'])}] -> {json_out}"
    )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1%}"


def _simulate(
    url: str,
    days: int,
    uplift: float,
    control_share: float,
    seed: int,
    customers: int,
    api_key: str | None,
    redis_url: str | None,
    data_dir: Path | None,
) -> dict[str, Any]:
    from recommender.config import load_settings
    from recommender.data.clock import utc_now
    from recommender.data.demo import generate_shop
    from recommender.marketing import simulation as sim

    redis = {k: v for k, v in {"url": redis_url, "data_dir": data_dir}.items() if v is not None}
    settings = load_settings({"redis": redis, "api": {"control_share": control_share}})
    window = settings.api.experiment_days
    if days + 1 >= window:
        fail(f"--days {days} must be under the report window minus one ({window - 1} days, RECO_EXPERIMENT_DAYS).")
    served = _call(f"{url}/experiment", api_key=api_key)["control_share"]
    if abs(served - control_share) > 1e-9:
        fail(f"--control-share {control_share} differs from the API's RECO_CONTROL_SHARE ({served}).")
    now = utc_now()
    # The demo shop ends before the report window, so its customers do not count in the experiment.
    demo = generate_shop(n_users=200, n_items=60, n_categories=4, days=60, end=now - timedelta(days=window + 2))
    with tempfile.TemporaryDirectory() as tmp:
        events, items = demo.write(Path(tmp))
        _run_job(events, items, settings)  # a version for the API to answer from
        plan = sim.plan(sim.ShopParams(customers=customers, days=days, uplift=uplift), seed)
        _simulate_days(url, plan, demo.items["item_id"][0].as_py(), seed, api_key, now)
        _run_job(events, items, settings)  # the nightly job computes the report from the live events
    report = _call(f"{url}/experiment/report", api_key=api_key)
    rate = next((x for x in report["lifts"] if x["metric"] == "repeat_purchase_rate"), {})
    return {
        "uplift": uplift,
        "metric": "repeat_purchase_rate",
        "true_lift": sim.true_lift(plan),
        "lift": rate.get("lift"),
        "ci_low": rate.get("ci_low"),
        "ci_high": rate.get("ci_high"),
        "significant": rate.get("significant", False),
        "customers": {v: report["variants"][v]["customers"] for v in report["variants"]},
    }
