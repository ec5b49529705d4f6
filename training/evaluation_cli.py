"""``reco evaluate`` and ``reco tune``: offline quality figures and per-data-set tuning.

Registered in :mod:`training.cli` as ``app.command("evaluate")(evaluate)`` and ``app.command("tune")(tune)``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from training.console import FORMATS, check_format, fail, require_charts

out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)

Events = Annotated[Path, typer.Option("--events", help="Events file (CSV or Parquet).")]
Items = Annotated[Path | None, typer.Option("--items", help="Catalogue file (CSV or Parquet).")]
Fmt = Annotated[str, typer.Option("--format", help=f"Input format: {', '.join(FORMATS)}.")]
TestDays = Annotated[
    int, typer.Option("--test-days", min=1, help="Length of the test window at the end of the log, in days.")
]
SettingsFile = Annotated[
    Path | None,
    typer.Option("--settings", help="Tuned-settings JSON (from `reco tune`) to evaluate instead of the defaults."),
]
MaxBad = Annotated[
    float | None,
    typer.Option(
        "--max-bad-share", envvar="RECO_MAX_BAD_SHARE", help="Share of bad rows that fails the run (default: 0.05)."
    ),
]
Progress = Annotated[bool, typer.Option(help="Show progress bars.")]
Publish = Annotated[
    bool,
    typer.Option(
        "--publish",
        help="Also record the figures in Redis (REDIS_URL or the embedded server) for the dashboard's Quality page.",
    ),
]
RedisUrl = Annotated[
    str | None, typer.Option("--redis-url", envvar="REDIS_URL", help="Redis server; unset starts an embedded one.")
]
DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="RECO_DATA_DIR", help="Where the embedded Redis keeps its data [default: var]."),
]


def _load(events: Path, items: Path | None, fmt: str, max_bad_share: float | None) -> Any:
    from recommender.config import load_settings
    from recommender.data.dataset import load_dataset
    from recommender.data.loading import DataError

    check_format(fmt)
    try:
        settings = load_settings({"job": {"max_bad_share": max_bad_share}})
        return load_dataset(events, items, fmt, settings.job.max_bad_share, settings.time_window())
    except DataError as exc:
        fail(str(exc))


def _params(settings: Path | None) -> Any:
    from recommender.config import load_settings, load_tuned

    try:
        return load_settings(tuned=load_tuned(settings) if settings else None).model
    except ValueError as exc:
        fail(str(exc))


def _fmt(v: float) -> str:
    return "–" if isinstance(v, float) and math.isnan(v) else f"{v:.4f}"


Ks = Annotated[
    list[int] | None,
    typer.Option("--k", min=1, help="Cut-off of the metrics; repeat for several (default: 10 and 20)."),
]
Targets = Annotated[
    list[str] | None,
    typer.Option(
        "--target",
        help="Target(s): purchase, purchase_new, interaction, interaction_new; repeat for several (default: all).",
    ),
]
Models = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        help="Model(s) to evaluate; repeat for several (default: all: production, als, als_new, "
        "global_popularity, recent_popularity, item_knn_cosine, item_knn_bm25, personal_top_frequency, "
        "tifu_knn, tifu_knn_dunnhumby, tifu_knn_tuned).",
    ),
]
JsonOut = Annotated[
    Path | None,
    typer.Option(
        "--json",
        help="Write every figure as JSON here: figures -> target -> user group -> model -> metric (e.g. ndcg@10).",
    ),
]
HtmlOut = Annotated[Path | None, typer.Option("--html", help="Write the self-contained HTML report with plots here.")]
Engine = Annotated[
    str,
    typer.Option(
        "--engine",
        help="Who fits ALS: implicit (the default engine) or spark (Spark MLlib ALS, as reco train --engine spark "
        "fits it; needs pip install '.[spark]'). Split, lists and metrics are the same.",
    ),
]
SparkMaster = Annotated[
    str, typer.Option(envvar="RECO_SPARK_MASTER", help="Spark master URL for --engine spark (local[*], spark://...).")
]
SelfTune = Annotated[
    bool,
    typer.Option(
        "--self-tune",
        help="Evaluate the settings `reco train` would choose itself without a settings file: its search on the "
        "training events, the last --gate-days of them as validation (the test window is never seen).",
    ),
]
LastDays = Annotated[
    int | None,
    typer.Option(
        "--last-days",
        min=1,
        help="Keep only the last N days of events (a shop with a shorter history); the test window is their end.",
    ),
]
NextBasket = Annotated[
    bool, typer.Option(help="Also score the next-purchase list on each customer's first order after the cut-off.")
]


def evaluate(
    events: Events,
    items: Items = None,
    fmt: Fmt = "generic",
    test_days: TestDays = 30,
    k: Ks = None,
    target: Targets = None,
    model: Models = None,
    settings: SettingsFile = None,
    json_out: JsonOut = None,
    html_out: HtmlOut = None,
    max_bad_share: MaxBad = None,
    next_basket: NextBasket = True,
    progress: Progress = True,
    publish: Publish = False,
    redis_url: RedisUrl = None,
    data_dir: DataDir = None,
    engine: Engine = "implicit",
    spark_master: SparkMaster = "local[*]",
    self_tune: SelfTune = False,
    last_days: LastDays = None,
) -> None:
    """Offline evaluation on a time split: the production list and ALS against every baseline, warm and cold users,
    the served list paired with each of them, and the next-purchase list on the next real order (next-basket
    protocol)."""
    if html_out:
        require_charts("reco evaluate --html")
    from recommender.evaluation.protocol import MODELS, TARGETS

    targets = tuple(target or TARGETS)
    models = tuple(model or MODELS)
    for t in targets:
        if t not in TARGETS:
            fail(f"--target must be one of {', '.join(TARGETS)}, not '{t}'.")
    for m in models:
        if m not in MODELS:
            fail(f"--model must be one of {', '.join(MODELS)}, not '{m}'.")
    ks = tuple(sorted(set(k or (10, 20))))
    if self_tune and settings:
        fail("--self-tune chooses the settings itself: leave out --settings.")
    params = _params(settings)
    fitter = AlsEngine(engine, spark_master, params)  # before loading: Spark's JVM starts by fork, best done early
    try:
        data = _load(events, items, fmt, max_bad_share)
        if last_days:
            data = _last_days(data, last_days)
        tuned = None
        if self_tune:
            params, tuned = _self_tuned(data, params, test_days, progress)
            fitter.params = params
        share_is_rule = not (tuned and "settings" in tuned)  # as the job: a self-tuned share is no rule
        result = _evaluate(data, params, fitter, test_days, ks, targets, models, progress, share_is_rule)
        result.meta["source"] = {
            "events": events.name,
            "items": items.name if items else None,
            "format": fmt,
            "settings": settings.name if settings else None,
            "last_days": last_days,
        }
        if tuned is not None:
            result.meta["self_tuned"] = tuned
        result.meta["engine"] = engine
        doc = result.as_dict()
        _print_figures(result, ks, test_days)
        if next_basket and "purchase" in result.figures:
            _next_basket(doc, data, params, ks, test_days, fitter.fit_model)
    finally:
        fitter.close()
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
        out.print(f"wrote {json_out}")
    if html_out:
        from recommender.evaluation.html_report import write_quality_report

        write_quality_report(doc, html_out, title=f"Offline evaluation: {events.name}")
        out.print(f"wrote {html_out}")
    if publish:
        version = _publish_evaluation(doc, redis_url, data_dir)
        out.print(f"recorded the figures for the dashboard (serving version {version or '-'})", highlight=False)


class AlsEngine:
    """The ALS fit of an evaluation: implicit's (``fit_model`` None, the protocol's own) or Spark MLlib's with the
    settings ``reco train --engine spark`` uses (one Spark session for the run; :meth:`close` stops it)."""

    def __init__(self, engine: str, master: str, params: Any) -> None:
        if engine not in ("implicit", "spark"):
            fail(f"--engine must be implicit or spark, not '{engine}'.")
        self.spark: Any = None
        self.fit_model: Any = None
        self.params = params
        if engine == "spark":
            from training.spark_engine import SparkEngine, missing_pyspark_message

            if problem := missing_pyspark_message():
                fail(f"{problem}.")
            self.spark = SparkEngine(master)
            self.fit_model = lambda inter: self.spark.fit_matrix(inter, self.params.als)

    def close(self) -> None:
        if self.spark is not None:
            self.spark.close()
            self.spark = None


def _last_days(data: Any, days: int) -> Any:
    """``data`` with the events of its last ``days`` days only (the catalogue stays whole)."""
    from dataclasses import replace

    from recommender.evaluation.split import last_days

    kept = last_days(data.events, days)
    out.print(f"last {days} days: {kept.num_rows:,} of {data.events.num_rows:,} events", highlight=False)
    return replace(data, events=kept)


def _self_tuned(data: Any, params: Any, test_days: int, progress: bool) -> tuple[Any, dict[str, Any]]:
    """The settings ``reco train`` would choose itself on the training events of this evaluation (the same search,
    the same validation window: the last ``gate_days`` before its holdout), and the search's report."""
    from recommender.config import load_settings
    from recommender.evaluation.self_tuning import search, too_short, with_settings
    from recommender.evaluation.split import time_split
    from training.self_tune import describe

    train = time_split(data.events, test_days=test_days).train
    gate_days = load_settings().job.gate_days
    if reason := too_short(train, gate_days):
        block: dict[str, Any] = {"skipped": reason}
    else:
        try:
            block = search(train, data.items, start=params, test_days=gate_days, progress=progress)
        except ValueError as exc:
            fail(str(exc))
        params = with_settings(params, block["settings"])
    out.print(f"self-tuning: {describe(block)}", highlight=False)
    return params, block


def _evaluate(
    data: Any,
    params: Any,
    fitter: AlsEngine,
    test_days: int,
    ks: tuple[int, ...],
    targets: tuple[str, ...],
    models: tuple[str, ...],
    progress: bool,
    share_is_rule: bool = True,
) -> Any:
    from recommender.evaluation.protocol import evaluate_events

    try:
        return evaluate_events(
            data.events,
            data.items,
            params,
            test_days=test_days,
            ks=ks,
            targets=targets,
            models=models,
            fit_model=fitter.fit_model,
            progress=progress,
            fit_options={"share_is_rule": share_is_rule},
        )
    except ValueError as exc:
        fail(str(exc))


def _print_figures(result: Any, ks: tuple[int, ...], test_days: int) -> None:
    """The split, one table per target for warm and cold users, and the main metric."""
    from recommender.evaluation.protocol import MAIN_GROUP, MAIN_METRIC

    shown = [f"{name}@{ks[0]}" for name in ("precision", "recall", "ndcg", "map", "hit_rate")]
    shown += [f"{name}@{kk}" for kk in ks[1:] for name in ("recall", "ndcg")]
    shown += [f"coverage@{ks[0]}", f"seen_share@{ks[0]}"]
    out.print(
        f"split: train before {result.meta['cutoff']}, test to {result.meta['end']} ({test_days} days); "
        f"{result.meta['warm_users']:,} warm users, {result.meta['cold_users']:,} cold test users",
        highlight=False,
    )
    for t, groups in result.figures.items():
        for group in (MAIN_GROUP, "cold"):
            per_model = groups.get(group)
            if not per_model:
                continue
            n = int(next(iter(per_model.values())).get("users", 0))
            out.print(_table(f"{t} · {group} ({n:,} users)", per_model, shown))
    main = result.main()
    out.print(
        f"main metric: {MAIN_METRIC} of production on warm users' {result.main_target()}s = {_fmt(main)}",
        highlight=False,
    )
    blend = result.meta.get("blend")
    if blend:
        gain, served = blend.get("gain"), "serves" if blend["chosen"] else "does not serve (the policy's list instead)"
        why = blend.get("skipped") or (f"validation gain {gain['mean']:+.4f}, z {gain['z']:.1f}" if gain else "")
        out.print(f"blend: {served}; {why}", highlight=False)
    for t, served in result.meta.get("served", {}).items():
        if served["against"]:
            out.print(_served_table(t, served))


def _served_table(target: str, served: dict[str, Any]) -> Table:
    """The served list's gain over each other model, paired per warm customer, with its standard error."""
    title = f"{target} · the served list ({served['model']}) against each, paired over {served['users']:,} warm users"
    table = Table(title=title, title_justify="left")
    table.add_column("against", no_wrap=True)
    columns = list(next(iter(served["against"].values())))
    for c in columns:
        table.add_column(f"{c} gain ± s.e. (z)", justify="right", no_wrap=True)
    for name, gains in served["against"].items():
        table.add_row(name, *(_gain(gains[c]) for c in columns))
    return table


def _gain(g: dict[str, float]) -> str:
    if math.isnan(g["gain"]):
        return "–"
    return f"{100 * g['gain']:+.1f} % ± {100 * g['stderr']:.1f} ({g['z']:.1f})"


def _next_basket(
    doc: dict[str, Any], data: Any, params: Any, ks: tuple[int, ...], test_days: int, fit_model: Any = None
) -> None:
    """Score the next-purchase list on each customer's next order; add it to ``doc`` and print it."""
    from recommender.evaluation.next_basket import evaluate_next_basket
    from recommender.evaluation.protocol import MAIN_GROUP

    nb = evaluate_next_basket(
        data,
        test_days=test_days,
        k=ks[:1],
        als=params.als,
        weights=params.weights.as_dict(),
        half_life_days=params.half_life_days,
        explore_share=params.lists.next_purchase_explore_share,
        fit_model=fit_model,
    )
    doc["figures"]["next_basket"] = {MAIN_GROUP: nb["next_basket"]}  # same layout: target -> group -> model -> metric
    doc["meta"]["next_basket"] = setup = nb["next_basket_setup"]
    cols = [f"{p}{m}@{ks[0]}" for p in ("", "repeat_", "new_") for m in ("recall", "ndcg")]
    title = f"next purchase · first order after the cut-off ({setup.get('users', 0):,} customers with 2+ orders)"
    out.print(_table(title, nb["next_basket"], cols))


def _table(title: str, per_model: dict[str, dict[str, float]], columns: list[str]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("model", no_wrap=True)
    for c in columns:
        table.add_column(c.replace("_", " "), justify="right", no_wrap=True)
    for name, values in per_model.items():
        table.add_row(name, *(_fmt(values.get(c, float("nan"))) for c in columns))
    return table


def _publish_evaluation(doc: dict[str, Any], redis_url: str | None, data_dir: Path | None) -> str | None:
    """Record the warm and cold users' figures in Redis with the version serving now; returns that version."""
    from datetime import datetime, timezone

    from cache.keys import Keys
    from cache.publisher import current_version
    from cache.server import connect
    from cache.status import record_evaluation
    from recommender.config import load_settings

    settings = load_settings({"redis": {"url": redis_url, "data_dir": data_dir}})
    keys = Keys(settings.redis.key_prefix)
    handle = connect(settings.redis.url, settings.redis.data_dir, settings.redis.cluster)
    try:
        version = current_version(handle.client, keys)[0]
        figures = {
            target: {g: per_model for g, per_model in groups.items() if g in ("warm", "cold")}
            for target, groups in doc["figures"].items()
        }
        recorded = datetime.now(timezone.utc).isoformat(timespec="seconds")
        record_evaluation(
            handle.client,
            keys,
            {"recorded_at": recorded, "serving_version": version, "meta": doc["meta"], "figures": figures},
        )
    finally:
        handle.close()
    return version


def tune(
    events: Events,
    items: Items = None,
    fmt: Fmt = "generic",
    test_days: TestDays = 30,
    trials: Annotated[
        int,
        typer.Option(
            "--trials", min=1, help="Search budget: number of ALS settings tried (the first is the starting one)."
        ),
    ] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random search (same seed, same trials).")] = 0,
    settings: Annotated[
        Path | None, typer.Option("--settings", help="Start from these tuned settings instead of the defaults.")
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Data-set name for the settings file (default: the format, or the events file name for generic).",
        ),
    ] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Settings file to write (default: settings/NAME.json).")
    ] = None,
    max_bad_share: MaxBad = None,
    progress: Progress = True,
) -> None:
    """Search ALS settings, event weights, decay half-life and the repeat share on a validation split carved from the
    training period (the evaluation test window is never used) and write the best as this data set's settings."""
    from recommender.config import dataset_name, settings_path
    from recommender.evaluation.tuning import tune as run_tune
    from recommender.evaluation.tuning import write_tuned

    data = _load(events, items, fmt, max_bad_share)
    start = _params(settings)
    dataset = name or dataset_name(fmt, events)
    path = out_file or settings_path(dataset)
    try:
        result = run_tune(
            data.events, data.items, start, test_days=test_days, trials=trials, seed=seed, progress=progress
        )
    except ValueError as exc:
        fail(str(exc))
    summary = result.as_dict()
    write_tuned(
        result,
        path,
        dataset=dataset,
        source={
            "events": events.name,
            "items": items.name if items else None,
            "format": fmt,
            "trials": trials,
            "seed": seed,
        },
    )
    table = Table(
        title=f"validation ({summary['validation']['cutoff']} to {summary['validation']['end']})", title_justify="left"
    )
    for c in ("", "ALS ndcg@10 on new items", "production ndcg@10"):
        table.add_column(c, justify="right" if c else "left")
    for label in ("start", "best"):
        row = summary[label]
        table.add_row(
            label,
            _fmt(row["als_new_ndcg@10"]),
            _fmt(row["production_ndcg@10"] if row["production_ndcg@10"] is not None else float("nan")),
        )
    out.print(table)
    best = result.best.as_dict()
    out.print(
        f"best: als={ {k: v for k, v in best['als'].items() if k != 'random_state'} }, "
        f"half_life_days={best['half_life_days']}, repeat_share={best['repeat_share']}, weights={best['weights']}",
        highlight=False,
    )
    out.print(f"wrote {path}")
