"""The experiment: configuration, each customer's variant, and the report of the lift (docs/EXPERIMENTS.md)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import ReaderDep, SettingsDep
from api.errors import NoExperimentReport
from api.experiments import variant
from api.params import UserP
from recommender.serving.experiment import bucket

router = APIRouter(tags=["experiment"])


class Experiment(BaseModel):
    control_share: float = Field(description="Share of customers in the control group (RECO_CONTROL_SHARE; 0: off).")
    active: bool = Field(description="True when a control group is configured.")
    attribution_days: float = Field(description="A purchase counts for a recommendation shown this many days before.")
    customers: dict[str, int] | None = Field(None, description="Customers per variant in the latest report.")
    report_as_of: str | None = Field(None, description="When the latest report was computed by the nightly job.")


class Assignment(BaseModel):
    user_id: str
    variant: str
    bucket: float = Field(description="The customer's hash position in [0, 1); control below the share.")


async def _report(reader: ReaderDep) -> dict[str, Any] | None:
    raw = await reader.client.get(reader.keys.experiment_report)
    return orjson.loads(raw) if raw else None


@router.get("/experiment", response_model=Experiment, summary="Experiment configuration and group sizes")
async def experiment(reader: ReaderDep, settings: SettingsDep) -> Experiment:
    report = await _report(reader)
    return Experiment(
        control_share=settings.api.control_share,
        active=settings.api.control_share > 0,
        attribution_days=settings.api.attribution_days,
        customers={name: v["customers"] for name, v in report["variants"].items()} if report else None,
        report_as_of=report.get("as_of") if report else None,
    )


@router.get("/experiment/assignment/{user_id}", response_model=Assignment, summary="A customer's variant")
async def assignment(settings: SettingsDep, user_id: UserP) -> Assignment:
    return Assignment(
        user_id=user_id, variant=variant(settings, user_id), bucket=bucket(user_id, settings.api.experiment_salt)
    )


@router.get(
    "/experiment/report",
    summary="Per-variant feedback, attributed sales, KPIs and the lift with 95% intervals",
    responses={404: {"description": "The nightly job has not computed a report yet."}},
)
async def experiment_report(reader: ReaderDep) -> dict[str, Any]:
    """Computed by each nightly run from impressions, clicks and purchases (see docs/EXPERIMENTS.md)."""
    report = await _report(reader)
    if report is None:
        raise NoExperimentReport()
    return report
