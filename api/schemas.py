"""Request and response models of the API (they also make the OpenAPI documentation at /docs)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from recommender.data.loading import ID_PATTERN
from recommender.data.schema import MAX_ID_LENGTH
from recommender.serving.merchandising import REASONS

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, examples=["17850"])]
MAX_BATCH = 1000

Source = Literal[
    "personal",
    "personal+bestsellers",
    "personal+session",
    "personal+session+bestsellers",
    "session",
    "session+bestsellers",
    "bestsellers",
    "new_arrivals",
    "new_arrivals+personal",
    "similar",
    "next_purchase",
    "recently_viewed",
]


class Item(BaseModel):
    item_id: str = Field(examples=["85123A"])
    score: float = Field(description="Ranking score of the list that produced the item (higher is better).")
    title: str | None = Field(None, examples=["WHITE HANGING HEART T-LIGHT HOLDER"])
    category: str | None = Field(None, examples=["HOLDER"])
    price: float | None = Field(None, examples=[2.55])
    reason: str = Field(
        description="Why the item is in this slot: "
        + "; ".join(f"'{k}': {v}" for k, v in REASONS.items())
        + " (docs/MERCHANDISING.md).",
        examples=["picked_for_you"],
    )


class ItemList(BaseModel):
    source: Source = Field(description="Which list answered.")
    degraded: bool = Field(
        False, description="True when Redis was unavailable and the last known bestsellers answered."
    )
    version: str = Field(
        description="Published model version the answer comes from.", examples=["20261123T020000Z-1a2b3c"]
    )
    items: list[Item]
    rec_id: str = Field(description="Recommendation id: send it back with impressions, clicks and purchases.")
    variant: str = Field("treatment", description="Experiment variant: 'treatment', or 'control' (bestsellers).")


Strategy = Literal["default", "segment"]
Period = Literal["week", "month", "quarter", "year"]  # the keys of recommender.marketing.kpis.PERIODS


class NextItem(Item):
    due: str | None = Field(
        None, description="Expected repurchase date (ISO) for 'due_again' items.", examples=["2011-12-20"]
    )


class NextPurchase(BaseModel):
    source: Literal["next_purchase"] = "next_purchase"
    version: str
    user_id: str
    strategy: str = Field("default", description="List strategy applied: 'default' or the segment's strategy.")
    segment: str | None = Field(None, description="The customer's RFM segment when `strategy=segment` was asked.")
    items: list[NextItem]
    rec_id: str = Field(description="Recommendation id: send it back with impressions, clicks and purchases.")
    variant: str = Field("treatment", description="'control': bestsellers instead of personal picks (hold out).")


class BatchRequest(BaseModel):
    user_ids: list[Id] = Field(min_length=1, max_length=MAX_BATCH, description=f"Up to {MAX_BATCH} customer ids.")
    n: int = Field(10, ge=1, le=100, description="Picks per customer.")
    strategy: Strategy = Field("default", description="'segment' applies each customer's RFM segment strategy.")

    model_config = {"json_schema_extra": {"examples": [{"user_ids": ["17850", "13047", "unknown-1"], "n": 5}]}}


class BatchResponse(BaseModel):
    source: Literal["next_purchase"] = "next_purchase"
    version: str
    results: dict[str, list[NextItem]] = Field(description="Picks per known customer, in request order.")
    strategies: dict[str, str] | None = Field(
        None, description="Strategy applied per customer when `strategy=segment`."
    )
    unknown: list[str] = Field(description="Requested ids with no purchase history in the published version.")
    rec_ids: dict[str, str] = Field(description="Recommendation id per customer in `results`.")
    variants: dict[str, str] = Field(description="Experiment variant per customer in `results`.")


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    version: str | None = None
    detail: str | None = None


class CustomerSegment(BaseModel):
    version: str
    user_id: str
    recency_days: int = Field(description="Days since the last purchase.")
    frequency: int = Field(description="Number of orders.")
    monetary: float | None = Field(
        description="Net spend (purchases minus returns), in `monetary_unit` (null if not a finite number)."
    )
    monetary_unit: str = Field(description="'currency', or 'units' when the log has no prices.")
    r_score: int = Field(ge=1, le=5)
    f_score: int = Field(ge=1, le=5)
    m_score: int = Field(ge=1, le=5)
    segment: str = Field(examples=["champions"])
    label: str = Field(examples=["Champions"])
    description: str
    action: str = Field(description="Suggested action for the marketer.")
    strategy: str = Field(description="E-mail list strategy for the segment (used by `strategy=segment`).")


class Kpis(BaseModel):
    version: str
    period: str
    monetary_unit: str
    rows: list[dict[str, Any]] = Field(
        description="One row per period, oldest first; periods without sales have zeros."
    )


class Segments(BaseModel):
    version: str
    monetary_unit: str
    segments: list[dict[str, Any]]


class EventIn(BaseModel):
    """One event, in the same contract as the job's input files (validated by the same rules)."""

    user_id: str | int = Field(examples=["17850"])
    item_id: str | int = Field(examples=["85123A"])
    event_type: str = Field(
        description="view, cart, purchase, return, or the feedback impression and click (aliases as in files).",
        examples=["view"],
    )
    timestamp: str | int | float | None = Field(None, description="ISO 8601 or epoch seconds/ms; default: now (UTC).")
    quantity: float | str | None = None
    price: float | str | None = None
    order_id: str | int | None = None
    rec_id: str | None = Field(
        None, max_length=200, description="impression, click, purchase: the rec_id of the list the item came from."
    )
    position: int | None = Field(None, ge=1, le=1000, description="impression, click: the item's slot, from 1.")


class EventBatch(BaseModel):
    events: list[EventIn] = Field(min_length=1, description="The batch; all of it is stored, or none of it.")

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "events": [
                        {"user_id": "visitor-42", "item_id": "85123A", "event_type": "view"},
                        {
                            "user_id": "visitor-42",
                            "item_id": "85123A",
                            "event_type": "cart",
                            "timestamp": "2026-11-23T10:15:00Z",
                        },
                    ]
                }
            ]
        }
    }


class EventsAccepted(BaseModel):
    accepted: int
    ids: list[str] = Field(description="Stream ids of the stored events, in request order.")
