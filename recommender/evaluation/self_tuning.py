"""The nightly job's own tuning: a bounded search on a validation window, its result kept with the published version.

When a shop has no tuned settings, or the ones its current version carries are older than ``max_age_days``,
``reco train`` calls :func:`search` before it trains. The window the promotion gate judges on (the last
``test_days``) is cut off first and never seen; the ``test_days`` before it are the validation window, and the
search learns from everything before that (the split of :mod:`recommender.evaluation.tuning`).

**Successive halving.** ``candidates`` settings (the last night's best first as a warm start, then the defaults,
then a seeded random sample of :data:`SELF_TUNE_SPACE`) race in rungs (:func:`rung_shares`): every candidate is
fitted with ``eta ** -(rungs - 1)`` of its ALS iterations and scored, the best ``1 / eta`` carry on from there to
``eta`` times as many, and so on until the last survivors run all of them (the same fit as one from scratch: ALS
from iteration k's factors is the rest of that fit). The ALS objective is that of ``reco tune`` (ALS ndcg@10 on
items new to the customer); the repeat share is then chosen on the production list's ndcg@10 with the winner's
fit, without fitting again (another share than the incumbent's only when clearly better, as the settings). A last
rung left with one candidate is not run (it would decide nothing; the night fits the winner anyway): with the
defaults (9 candidates, eta 3) nine candidates run a ninth of their iterations and
three of them a third, about 1 + 2/3 ALS fits on the shorter validation log plus 12 scorings, and the winner is
the best of the three. The winner replaces the incumbent (the last search's best, else the night's settings) only
when it is clearly better on validation (:data:`MIN_GAIN_Z`; the incumbent is fitted to the winner's iterations
when it left the race earlier, about a third of a fit), else the incumbent stays: a race picks the largest of several
noisy figures. ``budget_seconds`` stops it starting new fits once spent (the best candidate of the last
rung run in full wins; when that rung was cut short, the best of the rung before, or of the partial first rung).

The result (:func:`search`) is the ``tuned`` block of the version manifest: ``{"settings": {als, weights,
half_life_days, repeat_share}, "tuned_at", "seconds", "validation", "start", "best", "incumbent", "rungs",
"repeat_share_choice", "stopped_early"}`` (``incumbent``: what the winner was compared with, its gain and whether
the incumbent was kept; None when the incumbent won the race or the budget cut it short; ``repeat_share_choice``:
the incumbent's share, the best one, and when they differ the gain and whether the incumbent's was kept).
Following nights read it back (:func:`is_fresh`) and reuse ``settings`` without searching.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from recommender.config import ModelSettings
from recommender.data.clock import age_days
from recommender.evaluation import metrics
from recommender.evaluation.metrics import clearly_better, paired_gain
from recommender.evaluation.protocol import MAIN_METRIC, EvalContext
from recommender.evaluation.tuning import (
    REPEAT_SHARES,
    SEARCH_SPACE,
    new_item_lists,
    production_lists,
    sample_params,
    validation_setup,
)
from recommender.models.als import fit_als
from recommender.models.als_recommender import AlsFit, AlsRecommender
from recommender.models.weighting import build_interactions, latest_timestamp

DEFAULT_MAX_AGE_DAYS = 7.0
DEFAULT_CANDIDATES = 9
DEFAULT_ETA = 3
MIN_GAIN_Z = 1.645
"""The race's winner replaces the incumbent (the last search's best, or on a first search the settings the night
would run with) only when its mean per-customer gain on validation is at least this many standard errors of the
paired difference (one-sided 95 %, the textbook bound, as the learned blend's choice). A race of nine picks its
winner by the largest of nine noisy figures: on online-retail's last 120 days (about 400 customers to judge by) the
winner led the package defaults by z 1.5 and the lists it served on the test month were worse than the defaults'
(docs/QUALITY.md); on the whole shared logs and a generated shop it led by z 1.9 to 42 and stays."""
SELF_TUNE_SPACE: dict[str, tuple[Any, ...]] = {**SEARCH_SPACE, "factors": (16, 32, 64)}
"""``reco tune``'s space without 128 factors: a candidate costs at most about twice the default fit, which keeps a
night that re-tunes within a bounded multiple of the ALS fit (128 factors never won on the real logs)."""


def is_fresh(tuned: Mapping[str, Any] | None, now: datetime, max_age_days: float) -> bool:
    """Whether a manifest's ``tuned`` block holds settings searched less than ``max_age_days`` before ``now``."""
    if not tuned or not isinstance(tuned.get("settings"), Mapping) or not tuned.get("tuned_at"):
        return False
    age = age_days(tuned["tuned_at"], now)
    return age is not None and age < max_age_days


ALS_KEYS = ("factors", "regularization", "alpha", "iterations")
WEIGHT_KEYS = ("view", "cart", "purchase")


def too_short(events: pa.Table, holdout_days: int) -> str | None:
    """Why ``events`` hold too little history for a search before a holdout of ``holdout_days`` (a validation
    window as long, and two weeks to learn from before it), else None."""
    span = latest_timestamp(events) - pc.min(events["timestamp"]).as_py()
    needed = 2 * holdout_days + 14
    if span.days < needed:
        return f"less than {needed} days of history for a validation window before the holdout"
    return None


def with_settings(current: ModelSettings, settings: Mapping[str, Any], keep: Collection[str] = ()) -> ModelSettings:
    """``current`` with the searched settings of ``settings`` (a tuned-settings file's layout, :func:`tuned_settings`)
    except the ones named in ``keep`` (of :data:`ALS_KEYS`, :data:`WEIGHT_KEYS`, ``half_life_days`` and
    ``repeat_share``)."""
    tuned = ModelSettings.from_dict(settings)
    als = current.als.model_copy(update={k: getattr(tuned.als, k) for k in ALS_KEYS if k not in keep})
    weights = current.weights.model_copy(update={k: getattr(tuned.weights, k) for k in WEIGHT_KEYS if k not in keep})
    update: dict[str, Any] = {"als": als, "weights": weights}
    if "half_life_days" not in keep:
        update["half_life_days"] = tuned.half_life_days
    model = current.model_copy(update=update)
    return model if "repeat_share" in keep else model.with_repeat_share(tuned.repeat_share)


def tuned_settings(params: ModelSettings) -> dict[str, Any]:
    """The searched part of ``params``, in the layout of a tuned-settings file."""
    d = params.as_dict()
    return {
        "als": d["als"],
        "weights": d["weights"],
        "half_life_days": d["half_life_days"],
        "repeat_share": d["repeat_share"],
    }


def _candidates(
    start: ModelSettings, warm: ModelSettings | None, n: int, seed: int, tune_weights: bool
) -> list[ModelSettings]:
    rng = random.Random(seed)
    out = [warm] if warm is not None else []
    seen = {repr(tuned_settings(p)) for p in out}
    drawn = (sample_params(start, rng, SELF_TUNE_SPACE, tune_weights) for _ in range(n * 50))  # drawn while needed
    for params in itertools.chain([start], drawn):
        if len(out) >= n:
            break
        if repr(tuned_settings(params)) not in seen:
            seen.add(repr(tuned_settings(params)))
            out.append(params)
    return out


def _shortened(params: ModelSettings, share: float) -> ModelSettings:
    iterations = max(1, math.ceil(params.als.iterations * share))
    return params.model_copy(update={"als": params.als.model_copy(update={"iterations": iterations})})


def search(
    events: pa.Table,
    items: pa.Table,
    start: ModelSettings | None = None,
    warm: ModelSettings | None = None,
    *,
    test_days: int = 30,
    candidates: int = DEFAULT_CANDIDATES,
    eta: int = DEFAULT_ETA,
    budget_seconds: float | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Successive halving over ALS settings, then the repeat share (see the module docstring)."""
    if candidates < 1 or eta < 2:
        raise ValueError(f"candidates must be >= 1 and eta >= 2, got {candidates} and {eta}")
    started = time.perf_counter()
    start = start or ModelSettings()
    setup = validation_setup(events, items, test_days)
    ctx, target, tune_weights = setup.ctx, setup.target, setup.tune_weights
    if not ctx.users_to_score():
        raise ValueError("the validation window has no warm customers to score: a longer log is needed")
    pool = _candidates(start, warm, candidates, seed, tune_weights)
    incumbent = pool[0]  # the last search's best, else the settings the night would run with
    fitter = _Fitter(ctx)
    rungs: list[dict[str, Any]] = []
    best_run: _Run | None = None
    stopped = False
    bar = tqdm(desc="self-tune", unit="fit", disable=not progress)
    earlier: dict[int, AlsRecommender] = {}  # the last rung's fit of each candidate still in the race
    scored: list[_Run] = []
    for share in rung_shares(len(pool), eta):
        if rungs and len(pool) == 1:  # a rung of one decides nothing: the night fits the winner anyway
            break
        scored = []
        for params in pool:
            if budget_seconds is not None and time.perf_counter() - started > budget_seconds and (scored or rungs):
                stopped = True
                break
            shortened = _shortened(params, share)
            before = earlier.get(id(params))
            run = fitter.fit(shortened) if before is None else fitter.resume(before, shortened)
            scored.append(_judge(ctx, params, run, target))
            bar.update()
        scored.sort(key=lambda r: _key(r.score), reverse=True)
        rungs.append({"iterations_share": round(share, 4), "trials": [_summary(r.params, r.score) for r in scored]})
        if scored and (share == 1.0 or not stopped or best_run is None):
            best_run = scored[0]
        if stopped:
            break
        survivors = scored[: max(1, math.ceil(len(scored) / eta))]
        pool = [r.params for r in survivors]
        earlier = {id(r.params): r.run for r in survivors}
    bar.close()
    assert best_run is not None
    chosen, kept = best_run, None
    if chosen.params is not incumbent and not stopped:
        chosen, kept = _unless_clearly_better(ctx, target, fitter, chosen, incumbent, scored)
    repeat_share, production, share_report = _repeat_share(ctx, target, chosen, start, incumbent)
    best, best_als = chosen.params, chosen.score
    best = best.with_repeat_share(repeat_share)
    return {
        "settings": tuned_settings(best),
        "tuned_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 3),
        "validation": _validation(ctx, setup.cutoff, test_days),
        "objective": {
            "als": f"{MAIN_METRIC} of ALS on {target}_new, warm customers (validation)",
            "repeat_share": f"{MAIN_METRIC} of production on {target}, warm customers (validation)",
        },
        "best": {"als_new_ndcg@10": best_als, "production_ndcg@10": production},
        "warm_start": warm is not None,
        "incumbent": kept,
        "repeat_share_choice": share_report,
        "rungs": rungs,
        "stopped_early": stopped,
    }


@dataclass
class _Run:
    """A candidate's fit as the race judged it: its per-customer ALS ndcg@10 on items new to the customer (the race's
    score is their mean) and, on a purchase target, the ALS ranking without bought items those lists came from, which
    the production lists at each repeat share reuse (kept with the iterations it was ranked at: a survivor's fit
    carries on in place in the next rung)."""

    params: ModelSettings
    run: AlsRecommender
    ndcg: np.ndarray
    explore: dict[str, Any] | None
    iterations: int

    @property
    def score(self) -> float:
        return float(self.ndcg.mean()) if len(self.ndcg) else float("nan")

    def ranking(self, ctx: EvalContext) -> dict[str, Any]:
        """Each warm customer's top ALS picks without the items they bought, at the fit's current iterations."""
        if self.explore is not None and self.iterations == self.run.fitted.model.iterations:
            return self.explore
        return self.run.ranked(ctx.users_to_score(), ctx.depth, self.run.fitted.bought)


def _judge(ctx: EvalContext, params: ModelSettings, run: AlsRecommender, target: str) -> _Run:
    """``run`` scored on the search's objective, per warm customer who bought an item new to them, in order."""
    truth = ctx.truth[f"{target}_new"]
    warm = ctx.users_to_score()
    explore = run.ranked(warm, ctx.depth, run.fitted.bought) if target == "purchase" else None
    users = [u for u in warm if truth.get(u)]
    ndcg = metrics.per_user("ndcg", new_item_lists(ctx, run, target, explore), truth, 10, users)  # MAIN_METRIC
    return _Run(params, run, ndcg, explore, run.fitted.model.iterations)


def _unless_clearly_better(
    ctx: EvalContext, target: str, fitter: _Fitter, winner: _Run, incumbent: ModelSettings, last_rung: list[_Run]
) -> tuple[_Run, dict[str, Any]]:
    """The race's winner, or the incumbent when the winner's lead is within noise (see :data:`MIN_GAIN_Z`), and what
    was compared. Both are scored per customer at the iterations the race decided at (the incumbent fitted to them
    when it left the race earlier)."""
    theirs = next((r for r in last_rung if r.params is incumbent), None)
    if theirs is None:
        share = winner.run.fitted.model.iterations / max(winner.params.als.iterations, 1)
        theirs = _judge(ctx, incumbent, fitter.fit(_shortened(incumbent, share)), target)
    gain = paired_gain(winner.ndcg, theirs.ndcg)
    clear = clearly_better(gain, MIN_GAIN_Z)
    report = {"settings": tuned_settings(incumbent), "winner_gain": gain, "kept": not clear}
    return (winner if clear else theirs), report


def _repeat_share(
    ctx: EvalContext,
    target: str,
    chosen: _Run,
    start: ModelSettings,
    incumbent: ModelSettings,
) -> tuple[float, float, dict[str, Any]]:
    """The repeat share with the best production ndcg@10 on validation, from the chosen fit's one ALS ranking; the
    incumbent's share stays unless another is clearly better (:data:`MIN_GAIN_Z`, as for the ALS settings). Returns
    the share, its production ndcg@10 and a report (``gain`` and ``kept`` when another share led)."""
    warm, truth = ctx.users_to_score(), ctx.truth[target]
    held = incumbent.repeat_share
    shares = sorted(set(REPEAT_SHARES) | {start.repeat_share, held})
    by_share, _ = production_lists(ctx, chosen.params, chosen.run, shares, chosen.ranking(ctx))
    judged = [u for u in warm if truth.get(u)]
    per_user = {s: metrics.per_user("ndcg", by_share[s], truth, 10, judged) for s in shares}  # MAIN_METRIC
    score = {s: float(v.mean()) if len(v) else float("nan") for s, v in per_user.items()}
    best = max(score, key=lambda s: (_key(score[s]), s))
    report: dict[str, Any] = {"incumbent": held, "best": best}
    if best != held:
        gain = paired_gain(per_user[best], per_user[held])
        clear = clearly_better(gain, MIN_GAIN_Z)
        report |= {"gain": gain, "kept": not clear}
        best = best if clear else held
    return best, score[best], report


def rung_shares(candidates: int, eta: int) -> tuple[float, ...]:
    """The share of its ALS iterations a candidate has run by the end of each rung: one rung more than the times
    ``eta`` divides into ``candidates`` (eta 3: 9 to 26 candidates 1/9, 1/3, 1; 3 to 8: 1/3, 1; fewer: 1).
    Successive halving in its usual form (Jamieson and Talwalkar, 2016). On both shared logs a first rung of 2 to 4
    iterations kept the eventual winner among its three survivors (docs/PERFORMANCE.md, "A night that re-tunes")."""
    rungs = 1
    while eta**rungs <= candidates:
        rungs += 1
    return tuple(float(eta) ** -r for r in range(rungs - 1, -1, -1))


class _Fitter:
    """ALS fits on the search's training events that share what does not depend on the candidate: per weighting
    (event weights, half-life) the confidence matrix, and across weightings with the same ids the bought, seen and
    hidden matrices (a search fits many candidates on the same few weightings)."""

    def __init__(self, ctx: EvalContext) -> None:
        self.ctx = ctx
        self.base: AlsFit | None = None
        self.matrices: dict[str, AlsFit] = {}

    def fit(self, params: ModelSettings) -> AlsRecommender:
        weights, half_life = params.weights.as_dict(), params.half_life_days
        key = repr((weights, half_life))
        out = AlsRecommender(params.als, weights, half_life)
        if key not in self.matrices and self.base is not None:
            inter = build_interactions(self.ctx.split.train, weights, half_life, self.base.as_of)
            if np.array_equal(inter.user_ids, self.base.inter.user_ids) and np.array_equal(
                inter.item_ids, self.base.inter.item_ids
            ):  # the bought / seen / hidden matrices depend only on the ids
                self.matrices[key] = replace(self.base, inter=inter)
        if key in self.matrices:
            shared = self.matrices[key]
            out._fit = replace(shared, model=fit_als(shared.inter.matrix, params.als))
            return out
        out.fit(self.ctx.split.train, items=self.ctx.items)
        self.matrices[key] = out.fitted
        self.base = self.base or out.fitted
        return out

    def resume(self, run: AlsRecommender, params: ModelSettings) -> AlsRecommender:
        """``run`` (an earlier rung's fit of the same candidate) carried on to ``params``' iterations: ALS from
        the factors of iteration k is exactly the fit of k more, so a survivor of a rung pays only for the iterations
        it has not run yet."""
        model = run.fitted.model
        more = params.als.iterations - model.iterations
        if more > 0:
            with threadpool_limits(1, "blas"):
                model.iterations = more
                model.fit(run.fitted.inter.matrix, show_progress=False)
                model.iterations = params.als.iterations
        return run


def _validation(ctx: EvalContext, judged_from: datetime, test_days: int) -> dict[str, Any]:
    return {
        "cutoff": ctx.split.cutoff.isoformat(),
        "end": ctx.split.end.isoformat(),
        "test_days": test_days,
        "judged_from": judged_from.isoformat(),
        "warm_users": len(ctx.users_to_score()),
    }


def _summary(params: ModelSettings, value: float) -> dict[str, Any]:
    s = tuned_settings(params)
    return {
        "als": {k: v for k, v in s["als"].items() if k != "random_state"},
        "half_life_days": s["half_life_days"],
        "weights": s["weights"],
        "als_new_ndcg@10": value,
    }


def _key(value: float) -> float:
    return float("-inf") if math.isnan(value) else value
