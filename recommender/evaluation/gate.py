"""Promotion gate: a newly trained model is published only if it is not worse than what serves today.

The job evaluates the candidate settings on the recent holdout with :func:`holdout_metrics` (the same protocol and
code as ``reco evaluate``: fit on the events before the last ``test_days``, score the production list on what warm
customers bought in them) and asks :func:`decide`:

* refuse when the candidate's main metric is below **recent popularity** on the same holdout (a model that loses
  to the bestseller list must not serve personal picks);
* refuse when it is below the **current published model's** main metric by more than ``margin``, *relative*:
  ``candidate < current * (1 - margin)`` (default 2 %; relative, so the same margin works for a shop where
  ndcg@10 is 0.05 and one where it is 0.4). The job scores the current model on the same holdout and the same
  sampled customers as the candidate (:func:`score_holdout` with ``earlier``: its gate fit, which saw nothing of
  tonight's holdout); the figure its own night measured, on another holdout and another sample of customers, is
  the fallback: on a shop with a million customers two nights' samples differ by more than the margin;
* report **TIFU-KNN** (published Ta-Feng settings, the strong next-basket baseline) on the same holdout beside
  them, so the manifest and the job's log say how the candidate compares; it informs, it does not refuse (a shop
  must keep getting fresh lists while its personal list trails a baseline that is not served);
* publish otherwise, when there is nothing to judge by (no warm customer bought anything in the holdout), or when
  ``force`` is set (the reason says what would have happened).

The main metric is :data:`recommender.evaluation.protocol.MAIN_METRIC` (ndcg@10) of the production list on warm users'
purchases (interactions on logs without purchases). Store ``holdout["candidate"]`` in the published manifest so the
next run compares against it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from recommender.config import JobSettings, ModelSettings
from recommender.evaluation.protocol import (
    MAIN_GROUP,
    MAIN_METRIC,
    MAIN_MODEL,
    EvalContext,
    build_context,
    evaluate_context,
)
from recommender.evaluation.split import Split
from recommender.models.als_recommender import AlsFit, AlsRecommender
from recommender.models.repeat import RepeatIndex, repeat_candidates
from recommender.models.weighting import Interactions

DEFAULT_MARGIN: float = JobSettings.model_fields["gate_margin"].default
DEFAULT_MAX_USERS: int = JobSettings.model_fields["gate_users"].default
"""Warm customers the gate scores at most (a fixed random sample): the standard error of the mean metric is then
under 1 % of its per-customer standard deviation, and the gate's scoring cost stops growing with the shop."""
GATE_MODELS: tuple[str, ...] = (MAIN_MODEL, "recent_popularity", "tifu_knn")


@dataclass(frozen=True)
class GateDecision:
    """Whether to publish, and why."""

    publish: bool
    reason: str
    candidate: float
    current: float | None
    baseline: float
    metric: str = MAIN_METRIC

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def decide(
    candidate_metric: float,
    current_metric: float | None,
    recent_popularity_metric: float,
    margin: float = DEFAULT_MARGIN,
    force: bool = False,
    tifu_knn_metric: float | None = None,
) -> GateDecision:
    """Publish or keep the current version (see the module docstring); ``margin`` is relative (0.02 = 2 %)."""
    if margin < 0 or margin >= 1:
        raise ValueError(f"margin must be in [0, 1), got {margin}")
    cand, base = float(candidate_metric), float(recent_popularity_metric)
    current = None if _missing(current_metric) else float(current_metric)  # type: ignore[arg-type]
    m = MAIN_METRIC
    problems: list[str] = []
    if _missing(cand):
        verdict, why = True, f"no warm customer in the holdout to measure {m} on: published without a quality check"
    else:
        if not _missing(base) and cand < base:
            problems.append(f"candidate {m} {cand:.4f} is below recent popularity ({base:.4f})")
        if current is not None and cand < current * (1 - margin):
            problems.append(
                f"candidate {m} {cand:.4f} is more than {margin:.0%} below the published model's {current:.4f}"
                f" (floor {current * (1 - margin):.4f})"
            )
        verdict = not problems
        if verdict:
            versus = f"published model {current:.4f}, " if current is not None else "no published model, "
            why = f"candidate {m} {cand:.4f} passes ({versus}recent popularity {base:.4f}, margin {margin:.0%})"
        else:
            why = "; ".join(problems) + ": the current version keeps serving"
        reference = None if _missing(tifu_knn_metric) else float(tifu_knn_metric)  # type: ignore[arg-type]
        if reference:
            why += f"; TIFU-KNN {reference:.4f} ({cand / reference - 1:+.1%})"
    if force and not verdict:
        verdict, why = True, f"forced: published although {'; '.join(problems)}"
    elif force:
        why = f"forced: {why}"
    return GateDecision(verdict, why, cand, current, base)


def holdout_context(
    events: pa.Table,
    items: pa.Table,
    *,
    test_days: int = 30,
    cutoff: datetime | None = None,
    max_users: int | None = DEFAULT_MAX_USERS,
    split: Split | None = None,
) -> EvalContext:
    """The gate's holdout: warm customers' purchases in the last ``test_days`` (their interactions on logs where no
    warm customer bought in it), at most ``max_users`` of them (a fixed random sample; None keeps every one). With
    ``split`` (the same ``test_days``) the events are not split again."""

    def context(target: str) -> EvalContext:
        return build_context(
            events,
            items,
            test_days=test_days,
            ks=(10, 20),
            targets=(target,),
            cutoff=cutoff,
            max_users=max_users,
            split=split,
        )

    ctx = context("purchase")
    if not any(u in ctx.split.warm_users for u in ctx.truth["purchase"]):
        ctx = context("interaction")
    return ctx


def score_holdout(
    ctx: EvalContext,
    params: ModelSettings,
    *,
    fit: Callable[[Interactions], Any] | None = None,
    reference: bool = True,
    earlier: Callable[[Interactions], Any] | None = None,
) -> tuple[dict[str, Any], AlsFit, RepeatIndex]:
    """Fit the candidate settings on the holdout's training events and score them on it: :func:`holdout_metrics`'s
    figures, and the ALS fit and the repeat model (for the blend learning, which learns on the same events). With
    ``earlier`` (the serving version's model of the fit's ids, see :func:`recommender.models.warm_start.carry_over`)
    its production list is scored on the same customers and purchases: ``current`` (``nan`` without). The serving
    version is scored first and its model dropped before the candidate's fit, which may start in its arrays
    (:func:`recommender.models.warm_start.fit_on`): one set of customer factors at a time."""
    als = AlsRecommender(params.als, params.weights.as_dict(), params.half_life_days)
    current = math.nan
    als.fit(ctx.split.train, items=ctx.items, fit_model=earlier or fit)
    # The repeat model depends on the events alone: one for the candidate's production list and the serving one's.
    repeats = repeat_candidates(ctx.split.train, als.fitted.as_of, params.lists.next_purchase_horizon_days)
    if earlier is not None:
        current = evaluate_context(ctx, params, (MAIN_MODEL,), als=als, repeats=repeats).main(MAIN_MODEL)
        als.refit(fit)
    models = GATE_MODELS if reference else tuple(m for m in GATE_MODELS if m != "tifu_knn")
    result = evaluate_context(ctx, params, models, als=als, repeats=repeats)
    target = result.main_target()
    figures = {
        "metric": MAIN_METRIC,
        "target": target,
        "group": MAIN_GROUP,
        "candidate": result.main(MAIN_MODEL),
        "current": current,
        "recent_popularity": result.main("recent_popularity"),
        "tifu_knn": result.main("tifu_knn"),
        "users": 0 if math.isnan(users := result.get(target, MAIN_GROUP, MAIN_MODEL, "users")) else int(users),
        "cutoff": ctx.split.cutoff.isoformat(),
        "test_days": round((ctx.split.end - ctx.split.cutoff).total_seconds() / 86400),
        "figures": result.figures.get(target, {}),
    }
    return figures, als.fitted, repeats


def holdout_metrics(
    events: pa.Table,
    items: pa.Table,
    params: ModelSettings | None = None,
    *,
    test_days: int = 30,
    cutoff: datetime | None = None,
    max_users: int | None = DEFAULT_MAX_USERS,
    fit: Callable[[Interactions], Any] | None = None,
    reference: bool = True,
) -> dict[str, Any]:
    """Fit the candidate settings on the events before the holdout and score them on it (at most ``max_users``
    warm customers, a fixed random sample; None scores every one). Without ``reference`` TIFU-KNN, which is
    reported and never refuses, is not scored (``tifu_knn`` is ``nan``).

    Returns ``{"metric", "target", "group", "candidate", "current", "recent_popularity", "tifu_knn", "users",
    "cutoff", "test_days", "figures"}`` (``fit`` replaces the ALS fit from random factors, see
    :mod:`recommender.models.warm_start`): ``candidate``, ``recent_popularity`` and ``tifu_knn`` are the main metric
    of the production list, of the recent-popularity baseline and of TIFU-KNN (``nan`` when no warm customer bought
    anything in the holdout), ``figures`` every metric of the three (``Evaluation.figures`` restricted to the main
    target); ``current`` is ``nan`` (see :func:`score_holdout`).
    """
    ctx = holdout_context(events, items, test_days=test_days, cutoff=cutoff, max_users=max_users)
    return score_holdout(ctx, params or ModelSettings(), fit=fit, reference=reference)[0]
