"""Response models of the dashboard's JSON (api.dashboard.data): what each endpoint answers, as documented in /docs.

Manifests and Redis INFO fields stay open dicts: they grow with the job and the server, and the page reads what it
knows of them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class SegmentInfo(BaseModel):
    label: str
    description: str
    action: str
    strategy: str


class About(BaseModel):
    title: str
    read_key: bool = Field(description="RECO_READ_API_KEY is set: every read needs a key.")
    write_key: bool = Field(description="RECO_API_KEY is set: writing (events, rollback) is on.")
    experiment: bool = Field(description="The app has `GET /experiment/report`.")
    segments: dict[str, SegmentInfo]


class LiveIngestion(BaseModel):
    stream_length: int = Field(description="Live events in the stream (not yet trimmed by a run of the job).")
    archived_upto: str | None = Field(description="Id of the last stream entry the job archived.")
    last_event_at: str | None
    window_minutes: int
    per_minute: list[int] = Field(description="Events per minute, oldest minute first, the current one last.")
    in_window: int
    capped: bool = Field(description="More events arrived in the window than were counted.")
    now: str


class RouteFigures(BaseModel):
    route: str
    requests: int = Field(description="Since this worker started.")
    per_second: float | None = Field(description="Over the window; None over less than a second.")
    p50_ms: float | None
    p99_ms: float | None
    client_errors: int
    server_errors: int


class RequestFigures(BaseModel):
    pid: int = Field(description="The worker that answered (each worker counts its own requests).")
    uptime_seconds: float
    window_seconds: float
    routes: list[RouteFigures]
    rate_history: list[list[float]] = Field(description="[unix time, requests per second] at each earlier call.")


class Overview(BaseModel):
    current: dict[str, Any] | None = Field(description="The serving version's manifest (hidden items as a count).")
    previous: dict[str, Any] | None
    redis: dict[str, Any] = Field(description="INFO fields and `durability` of acknowledged writes.")
    live: LiveIngestion
    requests: RequestFigures


class Quality(BaseModel):
    version: str | None
    gate: dict[str, Any] | None = Field(description="The promotion gate's figures of the serving version.")
    log: list[dict[str, Any]] = Field(description="The gate's main figures of the latest runs, newest first.")
    offline: dict[str, Any] | None = Field(description="The latest `reco evaluate --publish` figures.")


class CustomerEvent(BaseModel):
    item_id: str
    event_type: str
    timestamp: str
    source: str = Field(description="`live` (since the last run) or `history` (what the job saw).")
    quantity: float | None = None
    price: float | None = None
    title: str | None = None
    category: str | None = None


class Customer(BaseModel):
    version: str
    user_id: str
    segment: dict[str, Any] | None = Field(description="RFM scores and segment with its label, action, strategy.")
    events: list[CustomerEvent] = Field(description="Live events, newest first, then the stored latest events.")
    has_personal: bool
    has_purchases: bool
    has_live: bool


class ItemStats(BaseModel):
    buyers: int
    repeat_buyers: int = Field(description="Buyers who bought it on two days or more.")
    repeat_rate: float
    units: float
    purchase_days: int
    median_gap_days: float | None
    buy_counts: dict[str, int] = Field(description="Buyers by the number of days they bought it on.")
    top_repeat_buyers: list[list[Any]] = Field(description="[user_id, purchase days, mean days between them].")


class Item(BaseModel):
    version: str
    item_id: str
    title: str | None
    category: str | None
    price: float | None
    available: bool
    stats: ItemStats | None
    has_similar: bool


class FoundItem(BaseModel):
    item_id: str
    title: str | None
    category: str | None


class Search(BaseModel):
    version: str
    customers: list[str]
    items: list[FoundItem]
