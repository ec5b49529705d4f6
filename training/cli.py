"""The ``reco`` command: demo data, the nightly job, the API server, rollback.

Every option also reads an environment variable (shown in ``--help``); options win over the environment.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from recommender.config import Settings, load_settings
from recommender.data.loading import DataError
from training.console import FORMATS, check_format, fail, out, print_report, require_charts
from training.train_cli import DataDir, RedisUrl, train

app = typer.Typer(
    help="Product recommendations for an online shop: train nightly, serve from Redis.", no_args_is_help=True
)


def _settings(redis_url: str | None, data_dir: Path | None) -> Settings:
    return load_settings({"redis": {"url": redis_url, "data_dir": data_dir}})


@app.command("demo-data")
def demo_data(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for events.csv and items.csv.")] = Path("demo-shop"),
    users: Annotated[int, typer.Option(help="Number of customers.", min=10)] = 2000,
    items: Annotated[int, typer.Option(help="Number of products.", min=10)] = 400,
    days: Annotated[int, typer.Option(help="Days of history.", min=14)] = 180,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same shop).")] = 42,
    kind: Annotated[
        str,
        typer.Option(
            help="Kind of shop: mixed (a third consumables), grocery (repeat-heavy, one basket a day), "
            "general (low-repeat general merchandise) or fashion (view-heavy, no repeats)."
        ),
    ] = "mixed",
) -> None:
    """Write a realistic generated shop (generic format) so every machine has data to run on."""
    from recommender.data.demo import SHOP_KINDS, generate_shop

    if kind not in SHOP_KINDS:
        fail(f"--kind must be one of {', '.join(SHOP_KINDS)}, not '{kind}'.")
    shop = generate_shop(n_users=users, n_items=items, days=days, seed=seed, kind=kind)
    ev, it = shop.write(out_dir)
    out.print(f"wrote {shop.events.num_rows:,} events to {ev} and {shop.items.num_rows:,} items to {it}")


app.command()(train)


@app.command()
def report(
    events: Annotated[Path, typer.Option("--events", help="Events file (CSV or Parquet).")],
    items: Annotated[Path | None, typer.Option("--items", help="Catalogue file (CSV or Parquet).")] = None,
    fmt: Annotated[str, typer.Option("--format", help=f"Input format: {', '.join(FORMATS)}.")] = "generic",
    out_file: Annotated[Path, typer.Option("--out", help="HTML file to write.")] = Path("report.html"),
    period: Annotated[str, typer.Option(help="KPI period: week, month, quarter or year.")] = "month",
    max_bad_share: Annotated[
        float | None, typer.Option(envvar="RECO_MAX_BAD_SHARE", help="Share of bad rows that fails [default: 0.05].")
    ] = None,
) -> None:
    """Write the marketer's HTML report: KPIs over time, segment sizes and revenue, segment movement."""
    require_charts("reco report")
    from cache.live import with_feedback_extras
    from recommender.data.dataset import load_dataset
    from recommender.data.schema import split_feedback
    from recommender.marketing.experiment_report import experiment_report
    from recommender.marketing.kpis import PERIODS
    from recommender.marketing.report import write_report
    from recommender.models.weighting import latest_timestamp
    from recommender.serving.experiment import variant_of

    check_format(fmt)
    if period not in PERIODS:
        fail(f"--period must be one of {', '.join(PERIODS)}, not '{period}'.")
    try:
        settings = load_settings({"job": {"max_bad_share": max_bad_share}})
        data = load_dataset(events, items, fmt, settings.job.max_bad_share, settings.time_window())
    except DataError as exc:
        fail(str(exc))
    for rep in data.reports:
        print_report(rep)
    train, feedback = split_feedback(data.events)
    experiment = None
    experiment_settings = settings.api
    if feedback.num_rows or experiment_settings.control_share > 0:
        experiment = experiment_report(
            train,
            with_feedback_extras(feedback),
            lambda u: variant_of(u, experiment_settings.experiment_salt, experiment_settings.control_share),
            latest_timestamp(data.events),
            experiment_settings.experiment_days,
            experiment_settings.attribution_days,
            experiment_settings.control_share,
        )
    title = f"Customers and repeat sales: {events.name}"
    path = write_report(train, out_file, period=period, title=title, experiment=experiment)
    out.print(f"wrote {path}")


export_app = typer.Typer(help="Bulk exports of published lists.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("next-purchase")
def export_next_purchase(
    out_file: Annotated[
        Path, typer.Option("--out", help="File to write: .jsonl (one customer a line) or .csv (one pick a row).")
    ],
    n: Annotated[int, typer.Option(min=1, max=1000, help="Picks per customer.")] = 10,
    file_format: Annotated[
        str | None, typer.Option("--file-format", help="jsonl or csv [default: from the file name].")
    ] = None,
    redis_url: RedisUrl = None,
    data_dir: DataDir = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Write every customer's next-purchase picks (with reason, due date, title, category, price) for bulk mailing,
    streaming from the version published when the export starts."""
    import csv

    import orjson
    from tqdm import tqdm

    from cache.keys import Keys
    from cache.on_request import iter_next_purchase
    from cache.publisher import current_version, manifest
    from cache.reader import read_value
    from cache.server import connect
    from recommender.serving.experiment import CONTROL, make_rec_id, variant_of

    kind = (file_format or out_file.suffix.lstrip(".")).lower()
    if kind not in ("jsonl", "csv"):
        fail(f"--file-format must be jsonl or csv (or name the file .jsonl/.csv), not '{kind}'.")
    settings = _settings(redis_url, data_dir)
    keys = Keys(settings.redis.key_prefix)
    handle = connect(settings.redis.url, settings.redis.data_dir, settings.redis.cluster)
    try:
        version = current_version(handle.client, keys)[0]
        if not version:
            fail("nothing is published yet: run `reco train` first.")
        counts = (manifest(handle.client, keys, version) or {}).get("counts") or {}
        total = counts.get("next_purchase_customers", counts.get("next_purchase_lists"))
        meta: dict[str, Any] = {}
        items_key = keys.version_prefix(version) + Keys.ITEMS
        best = read_value(handle.client, keys, version, Keys.best(None)) or []
        out_file.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with open(out_file, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh) if kind == "csv" else None
            if writer:
                header = ["user_id", "rank", "item_id", "score", "reason", "due", "title", "category", "price"]
                writer.writerow([*header, "rec_id", "variant"])
            for user_id, picks in tqdm(
                iter_next_purchase(handle.client, keys, version), total=total, unit="customer", disable=not progress
            ):
                variant = variant_of(user_id, settings.api.experiment_salt, settings.api.control_share)
                rec_id = make_rec_id("next_purchase", version, variant)
                if variant == CONTROL:  # held out: bestsellers, so the e-mail service can send a generic mail
                    picks = [{"item_id": i, "score": sc, "reason": "bestseller", "due": None} for i, sc in best]
                picks = picks[:n]
                missing = [p["item_id"] for p in picks if p["item_id"] not in meta]
                if missing:
                    for item_id, raw in zip(missing, handle.client.hmget(items_key, missing)):
                        meta[item_id] = orjson.loads(raw) if raw else {}
                rows = [{**p, "title": None, "category": None, "price": None, **meta[p["item_id"]]} for p in picks]
                _write_export_rows(fh, writer, user_id, version, rec_id, variant, rows)
                written += 1
    finally:
        handle.close()
    out.print(f"wrote next-purchase picks of {written:,} customers (version {version}) to {out_file}")


def _write_export_rows(
    fh: Any, writer: Any, user_id: str, version: str, rec_id: str, variant: str, rows: list[dict[str, Any]]
) -> None:
    """One customer's picks: a CSV row per pick, or one JSON line."""
    import orjson

    if writer:
        fields = ("item_id", "score", "reason", "due", "title", "category", "price")
        writer.writerows(
            [user_id, rank, *("" if r[f] is None else r[f] for f in fields), rec_id, variant]
            for rank, r in enumerate(rows, 1)
        )
    else:
        line = {"user_id": user_id, "version": version, "rec_id": rec_id, "variant": variant, "items": rows}
        fh.write(orjson.dumps(line).decode() + "\n")


@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar="RECO_HOST", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="RECO_PORT", help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(envvar="RECO_WORKERS", help="Worker processes.", min=1)] = 1,
    redis_url: RedisUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Start the API (answers from the published version in Redis); with several workers, each has its own socket."""
    import os

    from api.server import CannotListen
    from api.server import serve as run_server

    # The app reads its settings from the environment, so options are passed on that way (also to workers).
    if redis_url:
        os.environ["REDIS_URL"] = redis_url
    if data_dir:
        os.environ["RECO_DATA_DIR"] = str(data_dir)
    try:
        run_server(host, port, workers)
    except CannotListen as exc:
        fail(str(exc))


@app.command()
def rollback(redis_url: RedisUrl = None, data_dir: DataDir = None) -> None:
    """Serve the previous published version again (run it twice to undo)."""
    from cache.keys import Keys
    from cache.publisher import rollback as do_rollback
    from cache.server import connect

    settings = _settings(redis_url, data_dir)
    handle = connect(settings.redis.url, settings.redis.data_dir, settings.redis.cluster)
    try:
        version = do_rollback(handle.client, Keys(settings.redis.key_prefix))
    except RuntimeError as exc:
        fail(f"cannot roll back: {exc}.")
    finally:
        handle.close()
    out.print(f"now serving version {version}")


@app.command()
def examples(
    base_url: Annotated[str, typer.Option(help="Where the API is (or will be) served.")] = "http://127.0.0.1:8000",
    redis_url: RedisUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Print example API calls with ids taken from the published version."""
    from cache.keys import Keys
    from cache.publisher import current_version, manifest
    from cache.server import connect

    settings = _settings(redis_url, data_dir)
    keys = Keys(settings.redis.key_prefix)
    handle = connect(settings.redis.url, settings.redis.data_dir, settings.redis.cluster)
    try:
        version = current_version(handle.client, keys)[0]
        info = (manifest(handle.client, keys, version) if version else None) or {}
    finally:
        handle.close()
    if not version:
        fail("nothing is published yet: run `reco train` first.")
    ex = info.get("examples", {})
    user, item, category = ex.get("user_id") or "some-user", ex.get("item_id") or "some-item", ex.get("category")
    from urllib.parse import quote

    calls = [
        f"curl '{base_url}/readyz'",
        f"curl '{base_url}/recommend?user_id={user}&n=5'",
        f"curl '{base_url}/recommend?user_id=a-new-visitor&n=5'",
        f"curl '{base_url}/bestsellers?n=5'" + (f"  # or &category={quote(category)}" if category else ""),
        f"curl '{base_url}/new-arrivals?n=5&user_id={user}'",
        f"curl '{base_url}/similar/{item}?n=5'",
        f"curl '{base_url}/next-purchase/{user}?n=5'",
        f"curl -X POST '{base_url}/next-purchase/batch' -H 'content-type: application/json' "
        f'-d \'{{"user_ids": ["{user}", "unknown-customer"], "n": 3}}\'',
    ]
    out.print(
        f"\nVersion {version} is published. API documentation: {base_url}/docs, dashboard: {base_url}/dashboard"
        "\nExample calls:",
        highlight=False,
    )
    for call in calls:
        out.print("  " + call, highlight=False, soft_wrap=True)


@app.command()
def status(
    redis_url: RedisUrl = None,
    data_dir: DataDir = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print both versions' whole manifests as one JSON object (for scripts)."),
    ] = False,
) -> None:
    """Show the current and previous published versions."""
    from cache.keys import Keys
    from cache.publisher import current_version, manifest
    from cache.server import connect

    settings = _settings(redis_url, data_dir)
    keys = Keys(settings.redis.key_prefix)
    handle = connect(settings.redis.url, settings.redis.data_dir, settings.redis.cluster)
    try:
        versions = dict(zip(("current", "previous"), current_version(handle.client, keys)))
        if as_json:
            import orjson

            found = {label: manifest(handle.client, keys, v) if v else None for label, v in versions.items()}
            sys.stdout.write(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode() + "\n")
            return
        for label, version in versions.items():
            info = manifest(handle.client, keys, version) if version else None
            counts = info.get("counts", {}) if info else {}
            out.print(
                f"{label}: {version or '-'}"
                + (f"  (as of {info['as_of']}, {counts.get('users', 0):,} users)" if info else ""),
                highlight=False,
            )
            if info:
                from training.blend_step import describe as describe_blend
                from training.self_tune import describe

                out.print(f"  settings: {describe(info.get('tuned'))}", highlight=False)
                out.print(f"  learned blend: {describe_blend(info.get('blend'))}", highlight=False)
                if info.get("fit"):
                    out.print(f"  ALS fit: {info['fit']}", highlight=False)
    finally:
        handle.close()


from training.evaluation_cli import evaluate, tune  # noqa: E402  (commands defined in their own module)

app.command("evaluate")(evaluate)
app.command("tune")(tune)

from training.simulate_cli import simulate  # noqa: E402

app.command("simulate")(simulate)


def main() -> None:  # pragma: no cover - console entry for `python -m training.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
