"""Bounded random search of the production list's settings on a validation split of the training period.

Protocol: the evaluation split (``test_days`` at the end of the log) is left untouched. Its training part is split
again the same way: the last ``test_days`` before the evaluation cut-off are the *validation* window, everything
before it the search's training data. So tuned settings never see the events they are later evaluated on.

Each trial fits ALS once with one sampled setting (trial 0 is always the starting settings) and is scored twice:

* **ALS setting** (factors, regularization, alpha, iterations, half-life, and event weights when the log has more
  than purchases): ``ndcg@10`` of ALS on *items new to the customer* (target ``purchase_new``, warm users). That is
  the job ALS does in the production list, the discovery slots; the production list's own ndcg@10 is dominated by
  items due again and barely moves with ALS, so it is a noisy objective for ALS.
* **repeat share**: for the best ALS setting, every share in the grid is scored on the *main metric*, ``ndcg@10`` of
  the production list on warm users' purchases (:data:`recommender.evaluation.protocol.MAIN_METRIC`), and the best
  is kept.

Logs without purchases use the interaction targets instead. The result is written as a JSON settings file (see
:func:`write_tuned`), read back with :func:`recommender.config.load_tuned` by ``reco train --settings`` and
``reco evaluate --settings``.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from recommender.config import AlsParams, EventWeights, ModelSettings
from recommender.evaluation import metrics
from recommender.evaluation.protocol import MAIN_METRIC, EvalContext, build_context
from recommender.evaluation.split import time_split
from recommender.models.als_recommender import AlsRecommender
from recommender.models.repeat import RepeatIndex
from recommender.serving.lists import Ranked
from recommender.serving.production import ProductionModel

SEARCH_SPACE: dict[str, tuple[Any, ...]] = {
    "factors": (16, 32, 64, 128),
    "regularization": (0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
    "alpha": (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
    "iterations": (10, 15, 30),
    "half_life_days": (14.0, 30.0, 60.0, 120.0, 365.0),
    "weight_view": (0.5, 1.0, 2.0),
    "weight_cart": (2.0, 4.0, 8.0),
}
"""Choices per setting; event weights are searched only when the log has views or carts (purchase weight stays
fixed: on its own it is only a scale that ``alpha`` already covers)."""

REPEAT_SHARES: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
SETTINGS_VERSION = 1


@dataclass
class Trial:
    params: ModelSettings
    als_objective: float
    """ALS ndcg@10 on items new to the customer (validation)."""
    production: dict[float, float] = field(default_factory=dict)
    """Repeat share -> production ndcg@10 (validation)."""

    def summary(self) -> dict[str, Any]:
        p = self.params
        return {
            "als": {k: v for k, v in p.als.model_dump().items() if k != "random_state"},
            "weights": p.weights.as_dict(),
            "half_life_days": p.half_life_days,
            "als_new_ndcg@10": self.als_objective,
            "production_ndcg@10": {str(s): v for s, v in self.production.items()},
        }


@dataclass
class TuningResult:
    best: ModelSettings
    start: ModelSettings
    trials: list[Trial]
    validation: dict[str, Any]
    target: str

    def as_dict(self) -> dict[str, Any]:
        start, best = self.trials[0], max(self.trials, key=lambda t: _key(t.als_objective))
        return {
            "target": self.target,
            "validation": self.validation,
            "objective": {
                "als": f"{MAIN_METRIC} of ALS on {self.target}_new, warm users (validation)",
                "repeat_share": f"{MAIN_METRIC} of production on {self.target}, warm users (validation)",
            },
            "start": {
                "als_new_ndcg@10": start.als_objective,
                "production_ndcg@10": start.production.get(self.start.repeat_share),
            },
            "best": {
                "als_new_ndcg@10": best.als_objective,
                "production_ndcg@10": best.production.get(self.best.repeat_share),
            },
            "trials": [t.summary() for t in self.trials],
        }


def _key(value: float) -> float:
    return float("-inf") if math.isnan(value) else value  # nan sorts last


def has_signal(events: pa.Table, kind: str) -> bool:
    """Whether ``events`` hold any event of type ``kind``."""
    return bool(pc.any(pc.equal(events["event_type"], kind)).as_py())


@dataclass(frozen=True)
class ValidationSetup:
    """What both searches (``tune`` here and the nightly self-tuning) score on: the evaluation's test window is
    removed first, the validation window before it has the same length."""

    cutoff: datetime
    """Start of the evaluation's test window (the validation data ends there)."""
    target: str
    """``purchase`` when the log has purchases, else ``interaction``."""
    ctx: EvalContext
    tune_weights: bool
    """Whether the log has views or carts, so their weights are worth searching."""


def validation_setup(events: pa.Table, items: pa.Table | None, test_days: int) -> ValidationSetup:
    """The validation context of a search over ``events`` (see :class:`ValidationSetup`)."""
    outer = time_split(events, test_days=test_days)
    target = "purchase" if has_signal(outer.train, "purchase") else "interaction"
    ctx = build_context(outer.train, items, test_days=test_days, ks=(10,), targets=(target, f"{target}_new"))
    tune_weights = has_signal(outer.train, "view") or has_signal(outer.train, "cart")
    return ValidationSetup(outer.cutoff, target, ctx, tune_weights)


def sample_params(
    start: ModelSettings, rng: random.Random, space: Mapping[str, Sequence[Any]], tune_weights: bool
) -> ModelSettings:
    """One random setting from ``space`` (lists and repeat share kept from ``start``)."""
    pick = {name: rng.choice(list(choices)) for name, choices in space.items()}
    als = AlsParams(
        factors=pick["factors"],
        regularization=pick["regularization"],
        alpha=pick["alpha"],
        iterations=pick["iterations"],
        random_state=start.als.random_state,
    )
    weights = start.weights
    if tune_weights:
        weights = EventWeights(
            view=pick["weight_view"],
            cart=pick["weight_cart"],
            purchase=start.weights.purchase,
            return_=start.weights.return_,
        )
    return ModelSettings(als=als, weights=weights, half_life_days=float(pick["half_life_days"]), lists=start.lists)


def _score_trial(ctx: EvalContext, params: ModelSettings, target: str, shares: Sequence[float]) -> Trial:
    als = AlsRecommender(params.als, params.weights.as_dict(), params.half_life_days).fit(
        ctx.split.train, items=ctx.items
    )
    als_score, production, _ = score_fit(ctx, params, als, target, shares)
    return Trial(params, als_score, production)


def score_fit(
    ctx: EvalContext,
    params: ModelSettings,
    als: AlsRecommender,
    target: str,
    shares: Sequence[float],
    repeats: RepeatIndex | None = None,
) -> tuple[float, dict[float, float], RepeatIndex | None]:
    """ALS ndcg@10 on items new to the customer, and production ndcg@10 per repeat share, of one fitted ALS (with
    the repeat model, reused when given and returned for the next call)."""
    warm, k = ctx.users_to_score(), ctx.depth
    # ALS without bought items: the production list's picks, and on a purchase target the new-item lists as well
    explore = als.ranked(warm, k, als.fitted.bought) if target == "purchase" or shares else {}
    new_lists = new_item_lists(ctx, als, target, explore)
    new_truth = ctx.truth[f"{target}_new"]
    als_score = metrics.evaluate(new_lists, new_truth, ks=(10,), users=warm).get(MAIN_METRIC, float("nan"))
    truth = ctx.truth[target]
    production = {}
    if shares:
        by_share, repeats = production_lists(ctx, params, als, shares, explore, repeats)
        for share, lists in by_share.items():
            production[share] = metrics.evaluate(lists, truth, ks=(10,), users=warm).get(MAIN_METRIC, float("nan"))
    return als_score, production, repeats


def production_lists(
    ctx: EvalContext,
    params: ModelSettings,
    als: AlsRecommender,
    shares: Sequence[float],
    explore: dict[str, Ranked],
    repeats: RepeatIndex | None = None,
) -> tuple[dict[float, dict[str, list[str]]], RepeatIndex | None]:
    """The production lists of the warm customers at each repeat share (from ``explore``, their ALS ranking without
    bought items), and the repeat model they were built with (``repeats`` when given)."""
    model = ProductionModel(params).fit(ctx.split.train, items=ctx.items, als=als, repeats=repeats)
    return model.at_shares(ctx.users_to_score(), ctx.depth, shares, explore), model.repeats


def new_item_lists(
    ctx: EvalContext, als: AlsRecommender, target: str, explore: dict[str, Ranked] | None = None
) -> dict[str, list[str]]:
    """ALS's top ``ctx.depth`` items new to each warm customer (the search's objective is scored on them); on a
    purchase target the ranking without bought items, ``explore`` when the caller has it already."""
    warm, k = ctx.users_to_score(), ctx.depth
    if target == "purchase":  # the history is the fit's own purchase matrix: the same ranking
        ranked = explore if explore is not None else als.ranked(warm, k, als.fitted.bought)
        return {u: [i for i, _ in r] for u, r in ranked.items()}
    return als.recommend_excluding(warm, k, ctx.history[target])


def tune(
    events: pa.Table,
    items: pa.Table,
    start: ModelSettings | None = None,
    *,
    test_days: int = 30,
    trials: int = 20,
    seed: int = 0,
    space: Mapping[str, Sequence[Any]] = SEARCH_SPACE,
    repeat_shares: Sequence[float] = REPEAT_SHARES,
    progress: bool = True,
) -> TuningResult:
    """Search ``trials`` settings (the first is ``start``) on the validation split; return the best.

    ``test_days`` is the evaluation test window: it is removed first, and the validation window before it has the
    same length.
    """
    if trials < 1:
        raise ValueError("trials must be at least 1")
    start = start or ModelSettings()
    setup = validation_setup(events, items, test_days)
    ctx, target, tune_weights = setup.ctx, setup.target, setup.tune_weights
    if not ctx.users_to_score():
        raise ValueError("the validation window has no warm users to score: use a longer log or fewer test days")
    rng = random.Random(seed)
    candidates = [start]
    seen = {json.dumps(start.as_dict(), sort_keys=True)}
    attempts = 0
    while len(candidates) < trials and attempts < trials * 50:
        attempts += 1
        params = sample_params(start, rng, space, tune_weights)
        key = json.dumps(params.as_dict(), sort_keys=True)
        if key not in seen:
            seen.add(key)
            candidates.append(params)
    done: list[Trial] = []
    best_so_far = float("-inf")
    bar = tqdm(candidates, desc="tune", unit="trial", disable=not progress)
    for params in bar:
        trial = _score_trial(ctx, params, target, (start.repeat_share,))
        done.append(trial)
        best_so_far = max(best_so_far, _key(trial.als_objective))
        bar.set_postfix_str(f"best als_new {MAIN_METRIC}={best_so_far:.4f}")
    best_trial = max(done, key=lambda t: _key(t.als_objective))
    # The repeat share: every choice, with the best ALS setting.
    final = _score_trial(ctx, best_trial.params, target, sorted(set(repeat_shares) | {start.repeat_share}))
    best_trial.production = final.production
    share = max(final.production, key=lambda s: (_key(final.production[s]), s))
    best = best_trial.params.with_repeat_share(share)
    validation = {
        "cutoff": ctx.split.cutoff.isoformat(),
        "end": ctx.split.end.isoformat(),
        "test_days": test_days,
        "evaluation_cutoff": setup.cutoff.isoformat(),
        "warm_users": len(ctx.users_to_score()),
    }
    return TuningResult(best, start, done, validation, target)


def write_tuned(
    result: TuningResult, path: Path | str, *, dataset: str, source: Mapping[str, Any] | None = None
) -> Path:
    """Write the tuned settings as JSON: ``{"settings": {als, weights, half_life_days, repeat_share}, ...}``."""
    best = result.best.as_dict()
    doc = {
        "version": SETTINGS_VERSION,
        "dataset": dataset,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": dict(source or {}),
        "settings": {
            "als": best["als"],
            "weights": best["weights"],
            "half_life_days": best["half_life_days"],
            "repeat_share": best["repeat_share"],
        },
        "search": result.as_dict(),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path
