"""Configuration: every tunable with its default, read from the environment (prefix ``RECO_``) and CLI options.

``REDIS_URL`` is read without prefix, as is usual for it. Unset means "start an embedded Redis server".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field
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
        """JSON-ready form, the layout of a tuned-settings file (see :func:`recommender.evaluation.tuning.load_tuned`)."""
        return {
            "als": self.als.model_dump(),
            "weights": self.weights.as_dict(),
            "half_life_days": self.half_life_days,
            "repeat_share": self.repeat_share,
            "lists": self.lists.model_dump(),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelSettings:
        """Inverse of :meth:`as_dict` (``repeat_share`` outside ``lists`` wins); missing parts keep their defaults."""
        weights = dict(values.get("weights") or {})
        if "return" in weights:
            weights["return_"] = weights.pop("return")
        lists = dict(values.get("lists") or {})
        if values.get("repeat_share") is not None:
            lists["personal_repeat_share"] = float(values["repeat_share"])
        model: dict[str, Any] = {"als": AlsParams(**(values.get("als") or {})), "weights": EventWeights(**weights)}
        if values.get("half_life_days") is not None:
            model["half_life_days"] = float(values["half_life_days"])
        return cls(**model, lists=ListParams(**lists))


class Settings(BaseSettings):
    """Process-wide settings for the job and the API."""

    model_config = SettingsConfigDict(env_prefix="RECO_", extra="ignore")

    redis_url: str | None = Field(None, validation_alias=AliasChoices("REDIS_URL", "RECO_REDIS_URL"))
    data_dir: Path = Field(Path("var"), description="where the embedded Redis keeps its data file")
    key_prefix: str = Field("reco", pattern=r"^[A-Za-z0-9_\-]+$")
    half_life_days: float = Field(60.0, gt=0, description="age at which an event counts half")
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
    api_key: str | None = Field(None, repr=False, description="key required by writing endpoints (X-API-Key header)")
    read_api_key: str | None = Field(None, repr=False, description="when set, read endpoints need it (or api_key)")
    max_body_bytes: int = Field(1_000_000, ge=1_000, description="largest request body accepted")
    fallback_refresh_seconds: float = Field(15.0, gt=0, description="how often the API copies bestsellers for outages")
    redis_timeout_seconds: float = Field(0.5, gt=0, description="API socket timeout towards Redis")
    max_events_batch: int = Field(1000, ge=1, le=100_000, description="most events accepted by one POST /events")
    request_log: Literal["all", "notable", "off"] = Field(
        "notable", description="API request log lines: every request, only notable ones (errors, writes, slow), or none"
    )
    slow_request_ms: float = Field(100.0, gt=0, description="a request slower than this is notable")
    rotation_impressions: int = Field(
        5, ge=1, description="an item shown this often to a visitor without a click is demoted (rotation)"
    )
    rotation_hours: float = Field(24.0, gt=0, description="window of the impressions that count for rotation")

    @property
    def live_dir(self) -> Path:
        return self.live_archive_dir or self.data_dir / "live"

    def time_window(self, now: datetime | None = None) -> TimeWindow:
        """Plausible event times: from ``earliest_time`` to ``now`` (default: the wall clock) plus the clock skew."""
        return TimeWindow.ending_now(now, self.clock_skew_seconds, self.earliest_time)
