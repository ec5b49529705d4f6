"""``reco train``: the nightly job from the command line.

Registered in :mod:`training.cli`. Every tunable option also has an environment variable (shown in ``--help``), but
only the options typed on the command line are passed on as options: the environment and the tuned-settings file
take their places in the one precedence of :func:`recommender.config.load_settings`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from recommender.config import Settings, load_settings
from recommender.data.loading import DataError
from training.console import FORMATS, check_format, fail, out, print_report

Opt = typer.Option
Factors = Annotated[int | None, Opt(envvar="RECO_FACTORS", help="ALS latent factors [default: 64].")]
Regularization = Annotated[
    float | None, Opt(envvar="RECO_REGULARIZATION", help="ALS L2 regularization [default: 0.05].")
]
Alpha = Annotated[
    float | None, Opt(envvar="RECO_ALPHA", help="ALS confidence scale: c = 1 + alpha * weight [default: 1.0].")
]
Iterations = Annotated[int | None, Opt(envvar="RECO_ITERATIONS", help="ALS iterations [default: 15].")]
WeightView = Annotated[float | None, Opt(envvar="RECO_WEIGHT_VIEW", help="Confidence per view [default: 1].")]
WeightCart = Annotated[float | None, Opt(envvar="RECO_WEIGHT_CART", help="Confidence per add-to-cart [default: 4].")]
WeightPurchase = Annotated[
    float | None, Opt(envvar="RECO_WEIGHT_PURCHASE", help="Confidence per purchase [default: 10].")
]
HalfLife = Annotated[
    float | None, Opt(envvar="RECO_HALF_LIFE_DAYS", help="Age at which an event counts half [default: 60].")
]
BestsellerDays = Annotated[
    int | None, Opt(envvar="RECO_BESTSELLER_DAYS", help="Bestseller window in days [default: 30].")
]
NewArrivalDays = Annotated[
    int | None, Opt(envvar="RECO_NEW_ARRIVAL_DAYS", help="New-arrival window in days [default: 30].")
]
ListSize = Annotated[
    int | None, Opt(envvar="RECO_LIST_SIZE", help="Items stored per personal/next-purchase list [default: 100].")
]
ActiveDays = Annotated[
    int | None,
    Opt(
        envvar="RECO_ACTIVE_DAYS",
        min=0,
        help="Precompute personal and next-purchase lists for customers with an event within this many days; the "
        "API computes everyone else's on request from the published model (0: precompute all) [default: 7].",
    ),
]
Engine = Annotated[
    str,
    Opt(
        envvar="RECO_ENGINE",
        help="implicit (one machine) or spark: loading, weighting, the ALS fit and the top-k lists on Spark "
        "(needs pip install '.[spark]'; see docs/SCALING.md).",
    ),
]
SparkMaster = Annotated[
    str, Opt(envvar="RECO_SPARK_MASTER", help="Spark master URL for --engine spark (local[*], spark://...).")
]
IncludePurchased = Annotated[bool, Opt("--include-purchased", help="Keep already-bought items in personal picks.")]
MaxBadShare = Annotated[
    float | None, Opt(envvar="RECO_MAX_BAD_SHARE", help="Share of bad rows that fails the run [default: 0.05].")
]
AsOf = Annotated[datetime | None, Opt(help="Treat this time as 'now' [default: the newest event].")]
SettingsFile = Annotated[
    Path | None,
    Opt("--settings", help="Tuned settings (from `reco tune`) [default: settings/<data set>.json if it exists]."),
]
Gate = Annotated[bool, Opt(help="Evaluate the candidate on the recent holdout and publish only if it is not worse.")]
GateMargin = Annotated[
    float | None,
    Opt(min=0, max=1, help="Relative drop of the main metric (ndcg@10) the gate tolerates [default: 0.02]."),
]
GateDays = Annotated[int | None, Opt(min=1, help="Days of the gate's holdout [default: 30].")]
GateUsers = Annotated[
    int | None,
    Opt(
        min=0,
        help="Warm customers the gate scores at most (a fixed random sample, on which the serving version's fit is "
        "scored too; four times as many when that fit is not at hand; 0 = all) [default: 5000].",
    ),
]
ForcePublish = Annotated[bool, Opt("--force-publish", help="Publish even when the gate refuses.")]
SelfTune = Annotated[
    bool,
    Opt(
        help="Without a tuned-settings file: search the model settings on a validation window before the gate's "
        "holdout when the current version's are missing or older than --tune-max-age-days, else reuse them."
    ),
]
TuneMaxAge = Annotated[
    float, Opt(envvar="RECO_TUNE_MAX_AGE_DAYS", min=0, help="Age at which self-tuned settings are searched again.")
]
TuneBudget = Annotated[
    float | None,
    Opt(envvar="RECO_TUNE_BUDGET_SECONDS", min=1, help="Stop the self-tuning search starting new fits after this."),
]
PINNED_OPTIONS: dict[str, str] = {
    "factors": "factors",
    "regularization": "regularization",
    "alpha": "alpha",
    "iterations": "iterations",
    "weight_view": "view",
    "weight_cart": "cart",
    "weight_purchase": "purchase",
    "half_life_days": "half_life_days",
}
"""``reco train`` options that pin a model setting against self-tuning (typed on the command line)."""
LockWait = Annotated[
    float | None,
    Opt(
        "--lock-wait",
        envvar="RECO_LOCK_WAIT_SECONDS",
        min=0,
        help="Seconds to wait for another job on the same Redis and key prefix to finish [default: 0, exit 4].",
    ),
]
RedisUrl = Annotated[
    str | None, Opt("--redis-url", envvar="REDIS_URL", help="Redis server; unset starts an embedded one.")
]
DataDir = Annotated[
    Path | None,
    Opt("--data-dir", envvar="RECO_DATA_DIR", help="Where the embedded Redis keeps its data [default: var]."),
]

OPTION_PATHS: dict[str, tuple[str, ...]] = {
    "redis_url": ("redis", "url"),
    "data_dir": ("redis", "data_dir"),
    "max_bad_share": ("job", "max_bad_share"),
    "gate_margin": ("job", "gate_margin"),
    "gate_days": ("job", "gate_days"),
    "gate_users": ("job", "gate_users"),
    "lock_wait": ("job", "lock_wait_seconds"),
    "factors": ("model", "als", "factors"),
    "regularization": ("model", "als", "regularization"),
    "alpha": ("model", "als", "alpha"),
    "iterations": ("model", "als", "iterations"),
    "weight_view": ("model", "weights", "view"),
    "weight_cart": ("model", "weights", "cart"),
    "weight_purchase": ("model", "weights", "purchase"),
    "half_life_days": ("model", "half_life_days"),
    "bestseller_days": ("model", "lists", "bestseller_days"),
    "new_arrival_days": ("model", "lists", "new_arrival_days"),
    "list_size": ("model", "lists", "list_size"),
    "active_days": ("model", "lists", "active_days"),
}
"""Where each ``reco train`` option goes in the settings."""


def train(
    ctx: typer.Context,
    events: Annotated[Path, Opt("--events", help="Events file (CSV or Parquet).")],
    items: Annotated[Path | None, Opt("--items", help="Catalogue file (CSV or Parquet).")] = None,
    fmt: Annotated[str, Opt("--format", help=f"Input format: {', '.join(FORMATS)}.")] = "generic",
    factors: Factors = None,
    regularization: Regularization = None,
    alpha: Alpha = None,
    iterations: Iterations = None,
    weight_view: WeightView = None,
    weight_cart: WeightCart = None,
    weight_purchase: WeightPurchase = None,
    half_life_days: HalfLife = None,
    bestseller_days: BestsellerDays = None,
    new_arrival_days: NewArrivalDays = None,
    list_size: ListSize = None,
    active_days: ActiveDays = None,
    include_purchased: IncludePurchased = False,
    max_bad_share: MaxBadShare = None,
    as_of: AsOf = None,
    settings_file: SettingsFile = None,
    gate: Gate = True,
    gate_margin: GateMargin = None,
    gate_days: GateDays = None,
    gate_users: GateUsers = None,
    force_publish: ForcePublish = False,
    self_tune: SelfTune = True,
    tune_max_age_days: TuneMaxAge = 7.0,
    tune_budget_seconds: TuneBudget = None,
    lock_wait: LockWait = None,
    engine: Engine = "implicit",
    spark_master: SparkMaster = "local[*]",
    redis_url: RedisUrl = None,
    data_dir: DataDir = None,
    progress: Annotated[bool, Opt(help="Show progress bars.")] = True,
) -> None:
    """Run the nightly job: validate input, tune itself when due, train ALS, compute every list and publish a new
    version.

    Exit codes: 0 published, 2 unusable input or configuration, 3 kept the current version (promotion gate),
    4 another job is running (see --lock-wait), 5 the new version lost keys before its switch (not published).
    Precedence: options > tuned settings file > self-tuned settings > environment > defaults."""
    from training.job import JobConfig

    check_format(fmt)
    check_engine(engine, fmt)
    settings = train_settings(ctx, settings_file, fmt, events, include_purchased)
    cfg = JobConfig(events, items, fmt, settings, as_of, progress, gate, force_publish, engine, spark_master)
    cfg.self_tune = self_tune and engine == "implicit" and not _tuned(settings_file, fmt, events, quiet=True)
    cfg.tune_max_age_days, cfg.tune_budget_seconds = tune_max_age_days, tune_budget_seconds
    cfg.pinned = frozenset(key for name, key in PINNED_OPTIONS.items() if _typed(ctx, name))
    run(cfg)


def check_engine(engine: str, fmt: str) -> None:
    """Exit with a clear message for an unknown engine, a missing pyspark or a format Spark does not read."""
    if engine not in ("implicit", "spark"):
        fail(f"--engine must be implicit or spark, not '{engine}'.")
    if engine == "spark":
        from training.spark_engine import FORMATS as SPARK_FORMATS
        from training.spark_engine import missing_pyspark_message

        if problem := missing_pyspark_message():
            fail(f"{problem}.")
        if fmt not in SPARK_FORMATS:
            fail(f"--engine spark reads the formats {', '.join(SPARK_FORMATS)}, not '{fmt}'.")


def _typed(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was typed on the command line (not taken from the environment or the default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def train_settings(
    ctx: typer.Context, settings_file: Path | None, fmt: str, events: Path, include_purchased: bool
) -> Settings:
    """The settings of this run: the options typed on the command line over the tuned settings over the environment
    over the defaults."""
    options: dict[str, Any] = {}
    for name, path in OPTION_PATHS.items():
        if _typed(ctx, name):
            *sections, key = path
            node = options
            for section in sections:
                node = node.setdefault(section, {})
            node[key] = ctx.params[name]
    if include_purchased:
        options.setdefault("model", {}).setdefault("lists", {})["exclude_purchased"] = False
    tuned = _tuned(settings_file, fmt, events)
    try:
        return load_settings(options, tuned)
    except ValueError as exc:  # pydantic validation of an option, a tuned setting or the environment
        fail(f"invalid configuration: {exc}")


def run(cfg: Any) -> None:
    """Run the job on its Redis and print the summary, or exit with the code :func:`train` documents."""
    from cache.lock import LockHeld
    from cache.publisher import IncompleteVersion
    from cache.server import connect
    from training.job import GateRefused, run_job

    handle = connect(cfg.settings.redis.url, cfg.settings.redis.data_dir, cfg.settings.redis.cluster)
    try:
        result = run_job(cfg, handle.client)
    except DataError as exc:
        fail(f"{exc} Nothing was published.")
    except GateRefused as refused:
        reason = refused.decision.reason
        fail(f"the promotion gate kept the current version: {reason} (use --force-publish to override).", code=3)
    except LockHeld as held:
        fail(f"{held}; nothing was done (wait for it, or give --lock-wait SECONDS).", code=4)
    except IncompleteVersion as exc:
        fail(f"{exc}; the current version keeps serving.", code=5)
    finally:
        handle.close()
    _print_summary(result)


def _tuned(path: Path | None, fmt: str, events: Path, quiet: bool = False) -> dict[str, Any]:
    """Settings from `reco tune`: the given file, else settings/<data set>.json when it exists."""
    from recommender.config import dataset_name, load_tuned, settings_path

    if path is None:
        default = settings_path(dataset_name(fmt, events))
        if not default.is_file():
            return {}
        path = default
    try:
        tuned = load_tuned(path)
    except ValueError as exc:
        fail(str(exc))
    if not quiet:
        out.print(f"using tuned settings from {path}", highlight=False)
    return tuned


def _print_summary(result: Any) -> None:
    from rich.table import Table

    for report in result.reports:
        print_report(report)
    table = Table(title="run summary", show_header=False)
    for key, value in result.counts.items():
        table.add_row(key.replace("_", " "), f"{value:,}")
    for stage, seconds in result.seconds.items():
        table.add_row(f"time: {stage}", f"{seconds:.2f} s")
    table.add_row("time: total", f"{sum(result.seconds.values()):.2f} s")
    if result.gate:
        table.add_row("promotion gate", str(result.gate.get("decision") or result.gate.get("skipped")))
    if result.tuned:
        from training.self_tune import describe

        table.add_row("settings", describe(result.tuned))
    if result.blend:
        from training.blend_step import describe as describe_blend

        table.add_row("learned blend", describe_blend(result.blend))
    if result.fit:
        table.add_row("ALS fit", result.fit)
    table.add_row("as of", str(result.as_of))
    table.add_row("published version", str(result.version))
    table.add_row("previous version", str(result.replaced))
    out.print(table)
