"""Configuration: one :class:`Settings` object in sections (redis, api, job, model), every tunable with its default.

Each value comes from, highest first: a command-line option, the data set's tuned-settings file (``reco tune``), the
environment (``RECO_<NAME>``, e.g. ``RECO_FACTORS``, ``RECO_WEIGHT_VIEW``, ``RECO_API_KEY``), the default here.
:func:`load_settings` applies that order; nothing else assembles settings by hand. ``REDIS_URL`` is read without
prefix, as is usual for it; unset means "start an embedded Redis server".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from recommender.data.clock import TimeWindow


class EventWeights(BaseSettings):
    """Confidence contributed by one event of each type (before time decay)."""

    model_config = SettingsConfigDict(env_prefix="RECO_WEIGHT_", extra="ignore")

    view: float = Field(1.0, ge=0)
    cart: float = Field(4.0, ge=0)
    purchase: float = Field(10.0, ge=0)
    # Returns carry no confidence: a returned item is neither a positive nor (for ALS) a reliable negative signal.
    return_: float = Field(0.0, ge=0, validation_alias=AliasChoices("return_", "RECO_WEIGHT_RETURN"))

    def as_dict(self) -> dict[str, float]:
        return {"view": self.view, "cart": self.cart, "purchase": self.purchase, "return": self.return_}


class AlsParams(BaseSettings):
    """Hyper-parameters of implicit's AlternatingLeastSquares."""

    model_config = SettingsConfigDict(env_prefix="RECO_", extra="ignore")

    factors: int = Field(64, ge=1, le=1024)
    regularization: float = Field(0.05, ge=0)
    alpha: float = Field(1.0, gt=0)
    iterations: int = Field(15, ge=1, le=500)
    random_state: int = 42


class ListParams(BaseSettings):
    """Sizes and windows of the published lists."""

    model_config = SettingsConfigDict(env_prefix="RECO_", extra="ignore")

    list_size: int = Field(100, ge=1, le=1000, description="items stored per personal/next-purchase list")
    similar_size: int = Field(50, ge=1, le=1000, description="items stored per similar-items list")
    similar_exact_max_items: int = Field(
        20_000,
        ge=0,
        description="catalogues up to this many items get exact similar items (every pair scored); larger ones an "
        "approximate index (recall@10 >= 0.95, see docs/PERFORMANCE.md)",
    )
    similar_active_days: int = Field(
        7,
        ge=0,
        description="items with an event within this many days get their similar-items list precomputed; the API "
        "computes every other item's on request from the published item factors (0: precompute all)",
    )
    bestseller_days: int = Field(30, ge=1, description="recent window for bestsellers, in days")
    new_arrival_days: int = Field(30, ge=1, description="an item is new when first seen within this many days")
    exclude_purchased: bool = Field(
        True, description="drop items the user already bought from the discovery (ALS) picks"
    )
    personal_repeat_share: float = Field(
        1.0,
        ge=0,
        le=1,
        description="share of personal-pick slots open to items the customer is due to buy again (0: never show a "
        "bought item); measured best on both real logs, see docs/QUALITY.md",
    )
    active_days: int = Field(
        7,
        ge=0,
        description="customers with an event within this many days get their personal and next-purchase lists "
        "precomputed; the API computes everyone else's on request from the published model (0: precompute all)",
    )
    blend: bool = Field(
        True,
        description="learn the blend of every candidate source (again once its ranker is stale) and serve it when it "
        "clearly beats the items-due-then-ALS policy on the customers held out of its training (blend_min_z; see "
        "docs/QUALITY.md)",
    )
    blend_days: int = Field(
        90,
        ge=0,
        description="with the blend serving, customers who bought within this many days get their lists "
        "precomputed by it (the others get the policy's lists on request)",
    )
    blend_customers: int = Field(4000, ge=20, description="customers the blend learns from and is judged on, at most")
    blend_windows: int = Field(
        2,
        ge=1,
        le=2,
        description="label windows the blend's ranker learns from: 2 adds the window before the one it is judged on "
        "(its own ALS fit, at most blend_customers more customers; only the later window judges); 1: that one only",
    )
    blend_min_z: float = Field(
        1.645,
        ge=0,
        description="the blend serves only when its ndcg@10 gain over the policy on the held-out customers is at "
        "least this many standard errors of the per-customer difference (1.645: one-sided 95 %; 0: any gain)",
    )
    blend_max_age_days: float = Field(
        7.0,
        ge=0,
        description="the next nights reuse the learnt ranker and its decision until it is this old; it is learnt "
        "again sooner after a re-tune or a change of the model settings (see docs/PERFORMANCE.md)",
    )
    next_purchase_horizon_days: int = Field(30, ge=1, description="horizon of the next-purchase forecast")
    next_purchase_explore_share: float = Field(
        0.0, ge=0, le=1, description="share of next-purchase slots kept for new items from ALS (see docs/QUALITY.md)"
    )


class ModelSettings(BaseSettings):
    """The model section: everything that shapes the served lists (ALS, confidence weighting, decay, list settings
    with the repeat share). ``reco tune`` writes its tuned part, see :meth:`as_dict`."""

    model_config = SettingsConfigDict(env_prefix="RECO_", extra="ignore")

    als: AlsParams = Field(default_factory=AlsParams)
    weights: EventWeights = Field(default_factory=EventWeights)
    half_life_days: float = Field(60.0, gt=0, description="age at which an event counts half")
    lists: ListParams = Field(default_factory=ListParams)

    @property
    def repeat_share(self) -> float:
        """Share of the personal list's slots open to items due again (``lists.personal_repeat_share``)."""
        return self.lists.personal_repeat_share

    def with_repeat_share(self, share: float) -> ModelSettings:
        """A copy with another repeat share."""
        return self.model_copy(update={"lists": self.lists.model_copy(update={"personal_repeat_share": share})})

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, the layout of a tuned-settings file (see :func:`load_tuned`)
        plus the list settings."""
        return {
            "als": self.als.model_dump(),
            "weights": self.weights.as_dict(),
            "half_life_days": self.half_life_days,
            "repeat_share": self.repeat_share,
            "lists": self.lists.model_dump(),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelSettings:
        """Inverse of :meth:`as_dict` (a tuned-settings file's ``settings`` too); what it leaves out comes from the
        environment or the defaults."""
        return _model_section(_tuned_options(values))


class RedisSettings(BaseSettings):
    """Where the cache is: a Redis server, or an embedded one keeping its data under ``data_dir``."""

    model_config = SettingsConfigDict(env_prefix="RECO_", extra="ignore")

    url: str | None = Field(
        None, validation_alias=AliasChoices("url", "REDIS_URL", "RECO_REDIS_URL"), description="Redis server URL"
    )
    data_dir: Path = Field(Path("var"), description="where the embedded Redis, the live archive and the gate keep data")
    key_prefix: str = Field("reco", pattern=r"^[A-Za-z0-9_\-]+$", description="prefix of every key (one per shop)")
    timeout_seconds: float = Field(
        0.5,
        gt=0,
        validation_alias=AliasChoices("timeout_seconds", "RECO_REDIS_TIMEOUT_SECONDS"),
        description="API socket timeout towards Redis",
    )
    cluster: bool = Field(
        False,
        validation_alias=AliasChoices("cluster", "REDIS_CLUSTER", "RECO_REDIS_CLUSTER"),
        description="REDIS_URL names a node of a Redis Cluster: the job and the API use redis-py's cluster clients",
    )
    read_from_replicas: bool = Field(False, description="on a Redis Cluster, the API spreads its reads over replicas")
    pointer_ttl_ms: int = Field(
        1000, ge=0, description="how long an API worker trusts its copy of the current-version pointer (0: re-read it)"
    )
    version_grace_seconds: float = Field(
        10.0,
        ge=0,
        description="a version that stops being current or previous stays readable this long on top of the pointer "
        "TTL (the longest request), then Redis expires it",
    )

    @model_validator(mode="after")
    def _cluster_needs_url(self) -> RedisSettings:
        if self.cluster and not self.url:
            raise ValueError("REDIS_CLUSTER=1 needs REDIS_URL naming a node of the cluster (redis://host:port)")
        return self


class ApiSettings(BaseSettings):
    """The API: keys, limits, outage fallback, request logging, rotation and the experiment (the job and the export
    read the experiment's settings too)."""

    model_config = SettingsConfigDict(env_prefix="RECO_", extra="ignore")

    api_key: str | None = Field(None, repr=False, description="key required by writing endpoints (X-API-Key header)")
    read_api_key: str | None = Field(None, repr=False, description="when set, read endpoints need it (or api_key)")
    max_body_bytes: int = Field(1_000_000, ge=1_000, description="largest request body accepted")
    fallback_refresh_seconds: float = Field(15.0, gt=0, description="how often the API copies bestsellers for outages")
    near_cache_mb: float = Field(
        64.0, ge=0, description="per API worker, memory for decoded lists of the published version (0: no near cache)"
    )
    answer_cache_mb: float = Field(
        64.0,
        ge=0,
        description="per API worker, memory for encoded list answers, answered again before routing (0: none kept)",
    )
    max_events_batch: int = Field(1000, ge=1, le=100_000, description="most events accepted by one POST /events")
    request_log: Literal["all", "notable", "off"] = Field(
        "notable", description="API request log lines: every request, only notable ones (errors, writes, slow), or none"
    )
    slow_request_ms: float = Field(100.0, gt=0, description="a request slower than this is notable")
    rotation_impressions: int = Field(
        5, ge=1, description="an item shown this often to a visitor without a click is demoted (rotation)"
    )
    rotation_hours: float = Field(24.0, gt=0, description="window of the impressions that count for rotation")
    control_share: float = Field(
        0.0, ge=0, le=0.5, description="share of customers in the control group (bestsellers instead of personal picks)"
    )
    experiment_salt: str = Field(
        "reco", min_length=1, description="salt of the control-group hash; change it to draw new groups"
    )
    attribution_days: float = Field(7.0, gt=0, description="a purchase counts for a recommendation shown this recently")
    experiment_days: int = Field(28, ge=1, description="window of the experiment report, in days up to the run's as-of")


class JobSettings(BaseSettings):
    """The nightly job: input checks (also applied to live events and catalogue updates by the API), the job lock,
    publishing, the live-event archive and the promotion gate."""

    model_config = SettingsConfigDict(env_prefix="RECO_", extra="ignore")

    max_bad_share: float = Field(0.05, ge=0, le=1, description="share of bad rows that fails the run")
    clock_skew_seconds: float = Field(
        300.0, ge=0, le=86_400, description="how far ahead of the wall clock an event time may be (clocks drift)"
    )
    earliest_time: datetime = Field(
        datetime(1990, 1, 1), description="event and created_at times before this are bad rows (implausibly old)"
    )
    job_lock_seconds: float = Field(
        60.0, ge=5, description="time to live of the job lock; a running job renews it every third of this"
    )
    lock_wait_seconds: float = Field(
        0.0, ge=0, description="how long `reco train` waits for another job's lock before it gives up"
    )
    publish_batch_size: int = Field(
        5000, ge=1, description="Redis commands sent per pipeline round trip when publishing"
    )
    live_archive_dir: Path | None = Field(
        None, description="where the job archives live events [default: <data_dir>/live]"
    )
    gate_margin: float = Field(0.02, ge=0, le=1, description="relative drop of ndcg@10 the promotion gate tolerates")
    gate_days: int = Field(30, ge=1, description="days of the promotion gate's holdout")
    gate_users: int = Field(
        5_000,
        ge=0,
        description="warm customers the gate scores at most (a fixed random sample; four times as many when the "
        "serving version's fit is not at hand to score on the same customers; 0: all)",
    )
    gate_warm_iterations: int = Field(
        3, ge=0, description="iterations of the gate's fit from the previous run's factors (0: always a full fit)"
    )
    gate_warm_max_days: int = Field(7, ge=0, description="oldest previous gate fit (days) a warm start may use")
    fit_warm_iterations: int = Field(
        3,
        ge=0,
        description="iterations of the nightly fit from the serving version's factors (0: always a full fit)",
    )
    fit_warm_max_days: int = Field(7, ge=0, description="oldest serving version's fit (days) a warm start may use")


class Settings(BaseModel):
    """Every setting of the job and the API, in sections; build it with :func:`load_settings`."""

    redis: RedisSettings = Field(default_factory=RedisSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    job: JobSettings = Field(default_factory=JobSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)

    @property
    def live_dir(self) -> Path:
        """Where the job archives live events."""
        return self.job.live_archive_dir or self.redis.data_dir / "live"

    def time_window(self, now: datetime | None = None) -> TimeWindow:
        """Plausible event times: from ``earliest_time`` to ``now`` (default: the wall clock) plus the clock skew."""
        return TimeWindow.ending_now(now, self.job.clock_skew_seconds, self.job.earliest_time)

    def replace(self, **sections: Mapping[str, Any]) -> Settings:
        """A copy with some values of some sections replaced, e.g. ``replace(model={"lists": ListParams(...)})``
        (values are taken as they are: precedence is :func:`load_settings`'s business)."""
        update = {name: getattr(self, name).model_copy(update=dict(values)) for name, values in sections.items()}
        return self.model_copy(update=update)


Options = Mapping[str, Mapping[str, Any]]
"""Values per section, as given on the command line: ``{"model": {"als": {"factors": 32}}, "redis": {"url": ...}}``;
None means "not given"."""


def load_settings(options: Options | None = None, tuned: Mapping[str, Any] | None = None) -> Settings:
    """The settings in force: ``options`` > ``tuned`` (a tuned-settings file's ``settings``, see
    :func:`load_tuned`) > environment > defaults.

    pydantic-settings already ranks values given to a section above the environment and the environment above the
    defaults; here the options are laid over the tuned values and handed to each section. Raises
    ``pydantic.ValidationError`` (a ``ValueError``) on an invalid value, wherever it came from.
    """
    given = {name: _given(values) for name, values in (options or {}).items()}
    model = _deep_merge(_tuned_options(tuned or {}), given.get("model", {}))
    return Settings(
        redis=RedisSettings(**given.get("redis", {})),
        api=ApiSettings(**given.get("api", {})),
        job=JobSettings(**given.get("job", {})),
        model=_model_section(model),
    )


def _given(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` without the ones not given (None), nested dicts included."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            value = _given(value)
        if value is not None and value != {}:
            out[key] = value
    return out


def _deep_merge(low: Mapping[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(low)
    for key, value in high.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, Mapping) and key in out else value
    return out


def _tuned_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """A tuned-settings layout (``als``, ``weights``, ``half_life_days``, ``repeat_share``, optional ``lists``) as
    model-section options."""
    weights = {("return_" if k == "return" else k): v for k, v in (values.get("weights") or {}).items()}
    lists = dict(values.get("lists") or {})
    if values.get("repeat_share") is not None:
        lists["personal_repeat_share"] = float(values["repeat_share"])
    out = {"als": dict(values.get("als") or {}), "weights": weights, "lists": lists}
    if values.get("half_life_days") is not None:
        out["half_life_days"] = float(values["half_life_days"])
    return out


def _model_section(options: Mapping[str, Any]) -> ModelSettings:
    """The model section from options (sub-sections may be given as dicts or as built objects)."""
    parts: dict[str, Any] = {}
    for name, kind in (("als", AlsParams), ("weights", EventWeights), ("lists", ListParams)):
        value = options.get(name) or {}
        parts[name] = value if isinstance(value, kind) else kind(**value)
    if options.get("half_life_days") is not None:
        parts["half_life_days"] = options["half_life_days"]
    return ModelSettings(**parts)


# --- tuned-settings files (``reco tune`` writes them, ``reco train`` and ``reco evaluate`` read them) ------------


def dataset_name(fmt: str, events: Path | str) -> str:
    """The data set's name: its format, or the events file's stem for the generic format."""
    return fmt if fmt != "generic" else Path(events).stem


def settings_path(dataset: str, root: Path | str = ".") -> Path:
    """Where a data set's tuned settings live: ``settings/<data set>.json`` (``reco tune`` writes, ``reco train``
    reads)."""
    return Path(root) / "settings" / f"{dataset}.json"


def load_tuned(path: Path | str) -> dict[str, Any]:
    """The settings of a tuned-settings file: ``{"als": {...}, "weights": {...}, "half_life_days": float,
    "repeat_share": float}`` (keys absent from the file are absent here).

    ``AlsParams(**d["als"])``, ``EventWeights(**d["weights"])`` (``"return"`` is accepted by
    :meth:`ModelSettings.from_dict`; pass it there or as ``return_``) and ``ModelSettings.from_dict(d)`` take them as
    they are. Raises ``ValueError`` on a file that is not a settings file.
    """
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read settings file {path}: {exc}") from exc
    settings = doc.get("settings") if isinstance(doc, dict) else None
    if not isinstance(settings, dict):
        raise ValueError(f"{path} is not a tuned-settings file (no 'settings' object)")
    allowed = {"als", "weights", "half_life_days", "repeat_share"}
    unknown = set(settings) - allowed
    if unknown:
        raise ValueError(f"{path}: unknown settings {sorted(unknown)}")
    out = dict(settings.items())
    if "weights" in out:
        out["weights"] = {("return_" if k == "return" else k): v for k, v in out["weights"].items()}
    ModelSettings.from_dict(out)  # validates ranges (pydantic)
    return out


def tuned_params(path: Path | str) -> ModelSettings:
    """:class:`ModelSettings` from a settings file (everything the file leaves out from the environment or
    defaults)."""
    return ModelSettings.from_dict(load_tuned(path))
