"""Merchandising: live catalogue updates and boost / bury / pin / exclude rules (write key to change, readable with
the read key). Stored in Redis apart from the model versions; every list answer applies them from the next request
on (see docs/MERCHANDISING.md)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path
from pydantic import BaseModel, Field

from api.deps import ServicesDep, SettingsDep
from api.errors import ImplausibleItems, TooManyItems, UnknownRule
from api.security import require_write_key
from cache import merch
from recommender.serving.merchandising import LiveItem, Rule

router = APIRouter(tags=["merchandising"])
MAX_ITEMS_PER_CALL = 10_000
WRITE = {
    "dependencies": [Depends(require_write_key)],
    "responses": {401: {"description": "Missing or wrong X-API-Key."}, 403: {"description": "Writing is disabled."}},
}
RuleName = Annotated[
    str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$", description="Rule name.", examples=["tea"])
]


class ItemsAccepted(BaseModel):
    accepted: int
    generation: int = Field(description="Merchandising generation after the change.")


class RuleOut(BaseModel):
    name: str
    rule: Rule
    replaced: bool = False


def _utc_naive(update: LiveItem) -> dict[str, Any]:
    values = update.model_dump()
    created = values.get("created_at")
    if created is not None and created.tzinfo is not None:
        values["created_at"] = created.astimezone(timezone.utc).replace(tzinfo=None)
    if values.get("created_at") is not None:
        values["created_at"] = values["created_at"].isoformat()
    return values


@router.post("/items", response_model=ItemsAccepted, summary="Add or update catalogue items now", **WRITE)
async def upsert_items(
    svc: ServicesDep, settings: SettingsDep, items: Annotated[list[LiveItem], Body()]
) -> ItemsAccepted:
    """A JSON list of items (`item_id` plus any of `title`, `category`, `price`, `available`, `created_at`); fields
    left out keep their values. Counts from the next request: an unavailable item leaves every list and endpoint, a
    new one joins the new arrivals and, until the next run, gets similar items from its category. The nightly job
    reads these updates like the catalogue file."""
    if len(items) > MAX_ITEMS_PER_CALL:
        raise TooManyItems(MAX_ITEMS_PER_CALL, len(items))
    values = [_utc_naive(i) for i in items]
    window = settings.time_window()  # as for files: no created_at from the future or before the floor
    errors = [
        {"position": k, "field": "created_at", "value": v["created_at"], "reason": why}
        for k, v in enumerate(values)
        if v.get("created_at") and (why := window.check(datetime.fromisoformat(v["created_at"])))
    ]
    if errors:
        raise ImplausibleItems(errors)
    generation = await merch.upsert_items(svc.reader.client, svc.reader.keys, values)
    await svc.merch.refresh()  # this worker's very next request sees the change; the others hear it announced
    return ItemsAccepted(accepted=len(items), generation=generation)


@router.get("/rules", response_model=list[RuleOut], summary="Merchandising rules in force")
async def list_rules(svc: ServicesDep) -> list[RuleOut]:
    _, rules, _ = await merch.load(svc.reader.client, svc.reader.keys)
    return [RuleOut(name=name, rule=Rule.model_validate(rule)) for name, rule in sorted(rules.items())]


@router.put("/rules/{name}", response_model=RuleOut, summary="Create or replace a rule", **WRITE)
async def put_rule(svc: ServicesDep, name: RuleName, rule: Annotated[Rule, Body()]) -> RuleOut:
    """`{"kind": "pin", "item_id": "I1", "position": 2, "lists": ["recommend"]}`, `{"kind": "boost", "category":
    "tea", "factor": 1.5}`, `{"kind": "bury", "item_ids": [...], "factor": 0.5}`, `{"kind": "exclude", "item_ids":
    [...]}`; optional `starts` / `ends` (UTC) and `lists` (default: every list kind)."""
    replaced = await merch.put_rule(svc.reader.client, svc.reader.keys, name, rule.model_dump(mode="json"))
    await svc.merch.refresh()
    return RuleOut(name=name, rule=rule, replaced=replaced)


@router.delete("/rules/{name}", response_model=RuleOut, summary="Remove a rule", **WRITE)
async def delete_rule(svc: ServicesDep, name: RuleName) -> RuleOut:
    _, rules, _ = await merch.load(svc.reader.client, svc.reader.keys)
    if name not in rules or not await merch.delete_rule(svc.reader.client, svc.reader.keys, name):
        raise UnknownRule(name)
    await svc.merch.refresh()
    return RuleOut(name=name, rule=Rule.model_validate(rules[name]))
