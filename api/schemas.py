"""Request and response models of the API (they also make the OpenAPI documentation at /docs)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from recommender.loading import ID_PATTERN
from recommender.schema import MAX_ID_LENGTH

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, examples=["17850"])]
MAX_BATCH = 1000

Source = Literal[
    "personal", "personal+bestsellers", "bestsellers", "new_arrivals", "new_arrivals+personal", "similar", "next_purchase"
]


class Item(BaseModel):
    item_id: str = Field(examples=["85123A"])
    score: float = Field(description="Ranking score of the list that produced the item (higher is better).")
    title: str | None = Field(None, examples=["WHITE HANGING HEART T-LIGHT HOLDER"])
    category: str | None = Field(None, examples=["HOLDER"])
    price: float | None = Field(None, examples=[2.55])


class ItemList(BaseModel):
    source: Source = Field(description="Which list answered.")
    version: str = Field(description="Published model version the answer comes from.", examples=["20261123T020000Z-1a2b3c"])
    items: list[Item]


class NextItem(Item):
    reason: Literal["due_again", "goes_with_your_purchases"] = Field(
        description="'due_again': bought before and due again around `due`; 'goes_with_your_purchases': new to the customer."
    )
    due: str | None = Field(None, description="Expected repurchase date (ISO) for 'due_again' items.", examples=["2011-12-20"])


class NextPurchase(BaseModel):
    source: Literal["next_purchase"] = "next_purchase"
    version: str
    user_id: str
    items: list[NextItem]


class BatchRequest(BaseModel):
    user_ids: list[Id] = Field(min_length=1, max_length=MAX_BATCH, description=f"Up to {MAX_BATCH} customer ids.")
    n: int = Field(10, ge=1, le=100, description="Picks per customer.")

    model_config = {"json_schema_extra": {"examples": [{"user_ids": ["17850", "13047", "unknown-1"], "n": 5}]}}


class BatchResponse(BaseModel):
    source: Literal["next_purchase"] = "next_purchase"
    version: str
    results: dict[str, list[NextItem]] = Field(description="Picks per known customer, in request order.")
    unknown: list[str] = Field(description="Requested ids with no purchase history in the published version.")


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    version: str | None = None
    detail: str | None = None
