"""E-mail: each customer's next likely purchases, one by one or for a whole mailing batch."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from api.deps import ServicesDep
from api.errors import UnknownCustomer
from api.experiments import tagged
from api.merchandising import as_entries, present
from api.params import N, UserP
from api.published import computed, fetch, fill_computed, json_response
from api.schemas import MAX_BATCH, BatchRequest, BatchResponse, NextPurchase, Strategy
from cache.keys import Keys
from recommender.serving import policy
from recommender.serving.experiment import CONTROL

router = APIRouter(tags=["e-mail"])


@router.get(
    "/next-purchase/{user_id}",
    response_model=NextPurchase,
    summary="Next likely purchases of a customer",
    responses={404: {"description": "The customer has no purchase history in the published version."}},
)
async def next_purchase(
    request: Request, svc: ServicesDep, user_id: UserP, n: N = 10, strategy: Strategy = "default"
) -> Response:
    """Items the customer is due to buy again (with the expected date), then new items that go with what they buy.
    With `strategy=segment`, the list follows the customer's RFM segment strategy (e.g. new arrivals for loyal
    customers, items due again for those about to sleep; see `GET /customers/{user_id}/segment`)."""
    if strategy == "default":
        version, (picks, customer, best) = await fetch(
            svc.reader, Keys.next(user_id), Keys.customer(user_id), Keys.best(None)
        )
        _, picks = await computed(svc.sessions, version, [], picks, customer)
        segment = None
    else:
        version, (picks, seg, personal, fresh, best, customer) = await fetch(
            svc.reader,
            Keys.next(user_id),
            Keys.segment(user_id),
            Keys.user(user_id),
            Keys.NEW,
            Keys.best(None),
            Keys.customer(user_id),
        )
        personal, picks = await computed(svc.sessions, version, personal, picks, customer)
    if picks is None:
        raise UnknownCustomer(user_id)
    if strategy == "segment":
        segment = seg["segment"] if seg else None
        strategy, picks = policy.segment_picks(seg, picks, personal, fresh or [], best or [])
    chosen, rec_id = tagged(svc.settings, "next_purchase", version, user_id)
    if chosen == CONTROL:  # held out: the e-mail service sends a generic mail (or none) with bestsellers
        picks = as_entries(best or [], "bestseller")
    await svc.merch.current()
    generation, valid_until = svc.merch.generation, svc.merch.valid_until(time.time())
    items = await present(svc.merch, version, "next_purchase", as_entries(picks, "due_again"), n)
    answer = NextPurchase(
        version=version, user_id=user_id, strategy=strategy, segment=segment, items=items, rec_id=rec_id, variant=chosen
    ).model_dump(mode="json", exclude={"rec_id", "variant"})  # validated and shaped once, then kept as bytes
    return svc.answers.respond(
        request.scope,
        answer,
        kind="next_purchase",
        version=version,
        variant=chosen,
        rec_id=rec_id,
        keep=True,  # no live events in it
        generation=generation,
        valid_until=valid_until,
    )


@router.post(
    "/next-purchase/batch",
    response_model=BatchResponse,
    summary=f"Next purchases for up to {MAX_BATCH} customers",
)
async def next_purchase_batch(svc: ServicesDep, body: Annotated[BatchRequest, Body()]) -> Response:
    """One Redis round trip for the whole batch. Customers without purchase history are listed in `unknown`."""
    ids = list(dict.fromkeys(body.user_ids))
    by_segment = body.strategy == "segment"
    per_user = [Keys.next, Keys.customer] + ([Keys.segment, Keys.user] if by_segment else [])
    shared = [Keys.NEW, Keys.best(None)]
    version, values = await fetch(svc.reader, *shared, *(key(u) for u in ids for key in per_user))
    fresh, best = values[0] or [], values[1] or []
    rows = values[len(shared) :]
    await fill_computed(svc.sessions, version, rows, len(per_user), by_segment)
    chosen: dict[str, list[Any]] = {}
    strategies: dict[str, str] = {}
    unknown: list[str] = []
    variants: dict[str, str] = {}
    rec_ids: dict[str, str] = {}
    for k, user_id in enumerate(ids):
        picks = rows[k * len(per_user)]
        if picks is None:
            unknown.append(user_id)
            continue
        if by_segment:
            seg, personal = rows[k * len(per_user) + 2], rows[k * len(per_user) + 3]
            strategies[user_id], picks = policy.segment_picks(seg, picks, personal, fresh, best)
        variants[user_id], rec_ids[user_id] = tagged(svc.settings, "next_purchase", version, user_id)
        chosen[user_id] = as_entries(best, "bestseller") if variants[user_id] == CONTROL else picks
    # Item metadata is cached per version in-process: after the first customers, no more round trips.
    results: dict[str, list[dict[str, Any]]] = {
        user_id: await present(svc.merch, version, "next_purchase", as_entries(picks, "due_again"), body.n)
        for user_id, picks in chosen.items()
    }
    return json_response(
        {
            "source": "next_purchase",
            "version": version,
            "results": results,
            "unknown": unknown,
            "strategies": strategies if by_segment else None,
            "rec_ids": rec_ids,
            "variants": variants,
        }
    )
