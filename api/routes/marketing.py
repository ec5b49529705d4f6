"""Marketing: each customer's RFM segment, the segment summary and the repeat-sales KPIs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import ReaderDep
from api.errors import UnknownCustomer
from api.params import UserP
from api.published import fetch
from api.schemas import CustomerSegment, Kpis, Period, Segments
from cache.keys import Keys
from recommender.marketing.rfm import SEGMENTS

router = APIRouter(tags=["marketing"])


@router.get(
    "/customers/{user_id}/segment",
    response_model=CustomerSegment,
    summary="RFM scores and segment of a customer",
    responses={404: {"description": "The customer has no purchase history in the published version."}},
)
async def customer_segment(reader: ReaderDep, user_id: UserP) -> CustomerSegment:
    """Recency, frequency and monetary scores (1-5, 5 best), the named segment and its suggested action."""
    version, (seg,) = await fetch(reader, Keys.segment(user_id))
    if seg is None:
        raise UnknownCustomer(user_id)
    info = SEGMENTS[seg["segment"]]
    return CustomerSegment(
        version=version,
        user_id=user_id,
        **seg,
        label=info.label,
        description=info.description,
        action=info.action,
        strategy=info.strategy,
    )


@router.get("/segments", response_model=Segments, summary="Segment sizes and revenue")
async def segments(reader: ReaderDep) -> Segments:
    version, (summary,) = await fetch(reader, Keys.SEGMENTS)
    return Segments(version=version, **(summary or {"monetary_unit": "currency", "segments": []}))


@router.get("/kpis", response_model=Kpis, summary="Repeat-sales KPIs per period")
async def kpis(reader: ReaderDep, period: Annotated[Period, Query(description="Period length.")] = "month") -> Kpis:
    """Active, new and returning customers, repeat-purchase rate, purchase frequency, average order value, revenue
    and the share from returning customers, historic and predicted customer value, per period."""
    version, (table,) = await fetch(reader, Keys.kpis(period))
    table = table or {"monetary_unit": "currency", "rows": []}
    return Kpis(version=version, period=period, **table)
