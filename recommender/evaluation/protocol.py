"""Offline evaluation: every model and baseline on one temporal split, scored by one metric code.

Protocol
--------
* :func:`recommender.evaluation.split.time_split` cuts the events at ``cutoff = newest event - test_days``: models learn
  from the events before it, and are scored on what each user did in the ``test_days`` after it. Nothing is
  shuffled; no event at or after the cutoff reaches any model.
* Users with a training event are *warm*; test users without one are *cold* and reported apart.
* Every model gets the same users, the same ground truth and the same candidate filtering (items the catalogue
  marks unavailable never count; the "new" targets below remove each user's history from every list), and is
  scored by :func:`recommender.evaluation.metrics.evaluate`.

Targets (what counts as a hit)
------------------------------
``purchase``
    every item the user bought in the test window;
``purchase_new``
    the test purchases of items the user had not bought before the cutoff; every model's list is computed
    *without* the user's earlier purchases (a list can't find something new with an item the user already has);
``interaction``, ``interaction_new``
    the same for any view, cart or purchase (history = items the user interacted with before the cutoff).

Models
------
Every model is a :class:`recommender.models.base.Recommender` taken by name from
:data:`recommender.evaluation.registry.REGISTRY`, fitted on the training events and asked for its lists.

``production``
    the personal list as the job serves it (:class:`recommender.serving.production.ProductionModel`, calling the
    serving policy): items due again from the repeat model blended with ALS picks the customer has not bought;
    cold users get the bestsellers (the API's cold answer);
``als``
    ALS alone, already bought items allowed; ``als_new``: ALS without the customer's purchases (the discovery
    part of ``production``). On the ``*_new`` targets the three ALS lists are the same list (ALS without the
    user's history), reported once as ``als``. Cold users have no ALS list and are not scored for ALS models.
``global_popularity``
    distinct interacting users per item; ``recent_popularity``: distinct buyers in the last
    ``bestseller_days`` of training (then all-time buyers);
``item_knn_cosine``, ``item_knn_bm25``
    implicit's item-item neighbours on the binary user x item matrix (filled from popularity);
``personal_top_frequency``
    the customer's own most often bought items (purchase target only; filled from popularity);
``tifu_knn``, ``tifu_knn_dunnhumby``, ``tifu_knn_tuned``
    TIFU-KNN (:mod:`recommender.models.tifu_knn`) with the paper's published Ta-Feng and Dunnhumby settings, and
    with settings chosen on a 30-day validation window at the end of the training events
    (:func:`recommender.evaluation.tifu_tuning.tune_tifu`); purchase target only, filled from popularity.

User groups
-----------
``warm``, ``cold``, and warm users by activity: distinct days with a view, cart or purchase before the cutoff,
``warm:1``, ``warm:2-3``, ``warm:4-9``, ``warm:10-29``, ``warm:30+``.

Figures (the JSON written by ``reco evaluate``)
-----------------------------------------------
``Evaluation.figures[target][group][model][metric]``, e.g. ``figures["purchase"]["warm"]["production"]["ndcg@10"]``.
Metrics per k (default 10 and 20): ``precision@k``, ``recall@k``, ``ndcg@k``, ``map@k``, ``hit_rate@k``,
``coverage@k`` (distinct items in the group's top-k lists / items with a training event that are available)
and ``seen_share@k`` (share of the top-k items the user had interacted with before the cutoff); plus ``users``,
the number of users scored (users of the group with a non-empty truth). :meth:`Evaluation.as_dict` adds ``meta``
(split, data sizes, parameters, seconds).

The main metric (gate and tuning objective) is :data:`MAIN_METRIC` of ``production`` on warm users' purchases
(interactions when the holdout has no purchases).

The served list against the others (``meta["served"]``, :func:`served_against`): the list the shop would serve
(``blend`` when it was evaluated and chose to serve, else ``production``; on the ``*_new`` targets the blend's new
items or ALS's) paired per warm customer with every other model's, at the smallest k: the relative gain in recall
and NDCG, its standard error and z (:func:`recommender.evaluation.metrics.relative_gain`), so a lead can be told from
the noise of one test window.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from recommender.config import ModelSettings
from recommender.data.schema import PURCHASE
from recommender.evaluation import metrics
from recommender.evaluation.registry import ALS_NEW_NAME, MODELS, REGISTRY, make_model
from recommender.evaluation.split import Split, time_split
from recommender.evaluation.split import targets as target_sets
from recommender.models.als_recommender import AlsRecommender
from recommender.models.base import Recommender
from recommender.models.repeat import RepeatIndex
from recommender.models.weighting import Interactions

FitModel = Callable[[Interactions], Any]
"""Replaces the ALS fit of the shared ALS model (e.g. Spark MLlib's, ``reco evaluate --engine spark``): takes the
training confidence matrix, returns a model with ``user_factors`` and ``item_factors`` like implicit's."""

MAIN_METRIC = "ndcg@10"
MAIN_MODEL = "production"
MAIN_GROUP = "warm"
TARGETS: tuple[str, ...] = ("purchase", "purchase_new", "interaction", "interaction_new")
ACTIVITY_BUCKETS: tuple[tuple[int, int | None], ...] = ((1, 1), (2, 3), (4, 9), (10, 29), (30, None))
Lists = dict[str, list[str]]


# --- the evaluation context: split, truth, groups -----------------------------------------------------------


@dataclass
class EvalContext:
    """A split with everything every model is scored against; built once, reused by tuning trials."""

    split: Split
    items: pa.Table
    ks: tuple[int, ...]
    targets: tuple[str, ...]
    truth: dict[str, dict[str, set[str]]]
    """Per target: user -> relevant test items."""
    history: dict[str, dict[str, set[str]]]
    """"purchase" / "interaction": user -> items before the cutoff."""
    groups: dict[str, list[str]]
    """Group name -> users (sorted), for every group with at least one scored user."""
    catalogue: frozenset[str]
    """Items a model can recommend: seen in training and available."""
    unavailable: frozenset[str]
    active_days: dict[str, int] = field(default_factory=dict)
    """User -> distinct days with a view, cart or purchase before the cutoff (for the activity groups)."""

    @property
    def depth(self) -> int:
        return max(self.ks)

    def users_to_score(self, cold: bool = False) -> list[str]:
        """Warm (or cold) users with a non-empty truth for any target."""
        pool = self.split.cold_users if cold else self.split.warm_users
        return sorted({u for truth in self.truth.values() for u, t in truth.items() if t and u in pool})


def build_context(
    events: pa.Table,
    items: pa.Table,
    *,
    test_days: int,
    ks: Sequence[int] = (10, 20),
    targets: Sequence[str] = TARGETS,
    cutoff: datetime | None = None,
    max_users: int | None = None,
    split: Split | None = None,
) -> EvalContext:
    """Split ``events`` and derive truth, histories, user groups and the candidate catalogue (``split``: the events
    already split, by :func:`recommender.evaluation.split.time_split` with ``test_days`` and ``cutoff``).

    With ``max_users`` only a fixed random sample of at most that many warm and that many cold scored users is kept
    (see :func:`narrow`), and histories and activity are built for those users alone: on a shop with millions of
    customers the per-customer history sets of everyone would dominate the memory of a promotion gate.
    """
    unknown = set(targets) - set(TARGETS)
    if unknown:
        raise ValueError(f"unknown targets {sorted(unknown)}; expected some of {TARGETS}")
    split = split or time_split(events, test_days=test_days, cutoff=cutoff)
    if split.train.num_rows == 0:
        raise ValueError(f"no events before the cutoff {split.cutoff}: use fewer test days")
    kinds = list(dict.fromkeys(t.removesuffix("_new") for t in targets))
    full = {kind: target_sets(split.test, kind) for kind in kinds}
    train = split.train
    if max_users is not None:
        full = _sample_truth(full, (split.warm_users, split.cold_users), max_users)
        scored = pa.array(sorted({u for per_user in full.values() for u in per_user}), pa.string())
        train = train.filter(pc.is_in(train["user_id"], value_set=scored))
    history = {"purchase": target_sets(train, "purchase")}
    only_purchases = pc.all(pc.equal(train["event_type"], PURCHASE)).as_py() is not False  # a log without views
    history["interaction"] = history["purchase"] if only_purchases else target_sets(train, "interaction")
    truth: dict[str, dict[str, set[str]]] = {}
    for target in targets:
        kind = target.removesuffix("_new")
        new = target.endswith("_new")
        truth[target] = metrics.split_repeat_new(full[kind], history[kind])[1] if new else full[kind]
    unavailable = frozenset(items.filter(pc.invert(pc.fill_null(items["available"], True)))["item_id"].to_pylist())
    catalogue = frozenset(pc.unique(split.train["item_id"]).to_pylist()) - unavailable
    ctx = EvalContext(
        split,
        items,
        tuple(sorted(set(ks))),
        tuple(targets),
        truth,
        history,
        {},
        catalogue,
        unavailable,
        _active_days(train),
    )
    ctx.groups = _groups(ctx)
    return ctx


def narrow(ctx: EvalContext, targets: Sequence[str] | None = None, max_users: int | None = None) -> EvalContext:
    """``ctx`` restricted to some of its targets and/or to at most ``max_users`` warm and ``max_users`` cold scored
    users (a fixed random sample: enough for a promotion decision on a shop with a million customers, at a fraction
    of the cost)."""
    truth = {t: ctx.truth[t] for t in (targets or ctx.targets)}
    if max_users is not None:
        truth = _sample_truth(truth, (ctx.split.warm_users, ctx.split.cold_users), max_users)
    out = replace(ctx, targets=tuple(truth), truth=truth, groups={})
    out.groups = _groups(out)
    return out


def _sample_truth(
    truth: dict[str, dict[str, set[str]]], pools: Sequence[Collection[str]], max_users: int, seed: int = 0
) -> dict[str, dict[str, set[str]]]:
    """``truth`` restricted to at most ``max_users`` scored users of each pool (seeded, so reruns agree)."""
    keep: set[str] = set()
    for pool in pools:
        scored = sorted({u for per_user in truth.values() for u, t in per_user.items() if t and u in pool})
        if len(scored) > max_users:
            scored = (
                np.random.default_rng(seed).choice(np.array(scored, dtype=object), max_users, replace=False).tolist()
            )
        keep.update(scored)
    return {target: {u: t for u, t in per_user.items() if u in keep} for target, per_user in truth.items()}


def _groups(ctx: EvalContext) -> dict[str, list[str]]:
    warm, cold = ctx.users_to_score(), ctx.users_to_score(cold=True)
    groups = {"warm": warm, "cold": cold}
    activity = ctx.active_days
    for lo, hi in ACTIVITY_BUCKETS:
        name = f"warm:{lo}+" if hi is None else (f"warm:{lo}" if lo == hi else f"warm:{lo}-{hi}")
        groups[name] = [u for u in warm if activity.get(u, 0) >= lo and (hi is None or activity.get(u, 0) <= hi)]
    return {name: users for name, users in groups.items() if users}


def _active_days(train: pa.Table) -> dict[str, int]:
    con = duckdb.connect()
    con.register("t", train.select(["user_id", "event_type", "timestamp"]))
    rows = con.sql(
        "SELECT user_id, count(DISTINCT CAST(timestamp AS DATE)) FROM t "
        "WHERE event_type IN ('view', 'cart', 'purchase') GROUP BY user_id"
    ).fetchall()
    return dict(rows)


# --- the runner -----------------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """Figures of every model (see the module docstring for the layout) and what produced them."""

    figures: dict[str, dict[str, dict[str, dict[str, float]]]]
    meta: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"meta": self.meta, "figures": self.figures}

    def get(self, target: str, group: str, model: str, metric: str) -> float:
        """One figure, ``nan`` if it was not measured."""
        return self.figures.get(target, {}).get(group, {}).get(model, {}).get(metric, float("nan"))

    def main_target(self) -> str:
        """``purchase`` when warm users bought anything in the test window, else ``interaction``."""
        for target in ("purchase", "interaction"):
            if self.figures.get(target, {}).get(MAIN_GROUP):
                return target
        return "purchase"

    def main(self, model: str = MAIN_MODEL, metric: str = MAIN_METRIC) -> float:
        """The main metric of ``model``: ``metric`` on warm users' main target."""
        return self.get(self.main_target(), MAIN_GROUP, model, metric)


def score(
    ctx: EvalContext, lists: Mapping[str, Mapping[str, Sequence[str]]], target: str, model: str
) -> dict[str, dict[str, float]]:
    """Metrics of one model's lists (``lists[group kind]`` for "warm"/"cold") on one target, per user group."""
    out: dict[str, dict[str, float]] = {}
    truth = ctx.truth[target]
    history = ctx.history["interaction"]
    for group, users in ctx.groups.items():
        if group == "cold" and target.endswith("_new"):
            continue  # a cold user has no history: every item is new, the figures would repeat the full target's
        recs = lists.get("cold" if group == "cold" else "warm")
        if recs is None:
            continue
        scored = [u for u in users if truth.get(u)]
        if not scored:
            continue
        out[group] = metrics.evaluate(
            recs, truth, ks=ctx.ks, history=history, catalogue_size=max(len(ctx.catalogue), 1), users=scored
        )
    return out


def model_lists(ctx: EvalContext, model: Recommender, *, new: bool = False, kind: str = "purchase") -> dict[str, Lists]:
    """``{"warm": lists, "cold": lists}`` of one fitted model at the context's depth (no cold lists for a model that
    has nothing for users without a training event).

    With ``new`` the user's ``kind`` history ("purchase" or "interaction") is left out of every list.
    """
    warm, cold = ctx.users_to_score(), ctx.users_to_score(cold=True)
    k = ctx.depth
    if new:
        out = {"warm": model.recommend_excluding(warm, k, ctx.history[kind])}
    else:
        out = {"warm": model.recommend(warm, k)}
    if model.serves_unknown_users:
        out["cold"] = model.recommend(cold, k)
    return out


def models_for(target: str, models: Sequence[str]) -> list[str]:
    """The models reported for a target (see the module docstring)."""
    out = [m for m in models if not (REGISTRY[m].purchase_only and not target.startswith("purchase"))]
    if target.endswith("_new"):
        als_like = [m for m in out if REGISTRY[m].uses_als]
        out = ([ALS_NEW_NAME] if als_like else []) + [
            m for m in out if not REGISTRY[m].uses_als and not REGISTRY[m].purchase_only
        ]
    return out


def fit_models(
    ctx: EvalContext,
    params: ModelSettings,
    models: Sequence[str],
    als: AlsRecommender | None = None,
    fit_model: FitModel | None = None,
    repeats: RepeatIndex | None = None,
    fit_options: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Recommender], dict[str, float]]:
    """Every model fitted on the context's training events (ALS once, shared, by ``fit_model`` when given), with the
    seconds each fit took; ``repeats`` (the repeat model of the same events) is reused by the models that have one;
    ``fit_options`` go to every model's ``fit`` (e.g. ``share_is_rule`` for the blend)."""
    seconds: dict[str, float] = {}
    if als is None and any(REGISTRY[m].uses_als for m in models):
        started = time.perf_counter()
        als = AlsRecommender(params.als, params.weights.as_dict(), params.half_life_days)
        als.fit(ctx.split.train, items=ctx.items, fit_model=fit_model)
        seconds["als_fit"] = round(time.perf_counter() - started, 3)
    fitted: dict[str, Recommender] = {}
    for name in models:
        started = time.perf_counter()
        fitted[name] = make_model(name, params).fit(
            ctx.split.train, items=ctx.items, als=als, repeats=repeats, **(fit_options or {})
        )
        seconds[name] = round(time.perf_counter() - started, 3)
    return fitted, seconds


def evaluate_context(
    ctx: EvalContext,
    params: ModelSettings,
    models: Sequence[str] = MODELS,
    *,
    als: AlsRecommender | None = None,
    fit_model: FitModel | None = None,
    progress: bool = False,
    repeats: RepeatIndex | None = None,
    fit_options: Mapping[str, Any] | None = None,
) -> Evaluation:
    """Fit what is needed on the context's training events and score every model on every target and group
    (``fit_model``: see :data:`FitModel`; ``repeats`` and ``fit_options``: see :func:`fit_models`)."""
    unknown = set(models) - set(MODELS)
    if unknown:
        raise ValueError(f"unknown models {sorted(unknown)}; expected some of {MODELS}")
    jobs = [(t, m) for t in ctx.targets for m in models_for(t, models)]
    names = list(dict.fromkeys(m for _, m in jobs))
    fitted, seconds = fit_models(ctx, params, names, als, fit_model, repeats, fit_options)
    figures: dict[str, dict[str, dict[str, dict[str, float]]]] = {t: {} for t in ctx.targets}
    cache: dict[tuple[str, bool, str], dict[str, Lists]] = {}
    lists_of: dict[tuple[str, str], dict[str, Lists]] = {}
    # On purchase-only logs both histories are the same: compute the "new" lists once.
    same_history = ctx.history["purchase"] == ctx.history["interaction"]
    bar = tqdm(jobs, desc="evaluate", unit="list", disable=not progress)
    for target, model in bar:
        bar.set_postfix_str(f"{target} {model}")
        t0 = time.perf_counter()
        new = target.endswith("_new")
        kind = target.removesuffix("_new")
        # Same lists for every target they serve: full lists once, "new" lists once per history kind.
        key = (model, new, ("purchase" if same_history else kind) if new else "")
        if key not in cache:
            cache[key] = model_lists(ctx, fitted[model], new=new, kind=key[2] or kind)
        lists_of[(target, model)] = cache[key]
        for group, values in score(ctx, cache[key], target, model).items():
            figures[target].setdefault(group, {})[model] = values
        seconds[model] = round(seconds.get(model, 0.0) + time.perf_counter() - t0, 3)
    figures = {t: g for t, g in figures.items() if g}
    meta = _meta(ctx, params, seconds)
    outcome = getattr(fitted.get("blend"), "outcome", None)
    if outcome is not None:  # whether the blend served, and the validation figures it was chosen on
        kept = ("skipped", "validation", "gain", "customers")
        meta["blend"] = {"chosen": outcome.chosen, **{k: outcome.report[k] for k in kept if k in outcome.report}}
    meta["served"] = served_against(ctx, lists_of, blend_serves=outcome is not None and outcome.chosen)
    return Evaluation(figures, meta)


def served_against(
    ctx: EvalContext, lists_of: Mapping[tuple[str, str], Mapping[str, Lists]], *, blend_serves: bool
) -> dict[str, dict[str, Any]]:
    """Per target, the served list (see the module docstring) paired per warm customer with every other model's
    lists ``lists_of[(target, model)]``: ``{"model", "k", "users", "against": {model: {"recall@k": {"gain",
    "stderr", "z"}, "ndcg@k": ...}}}``, gains and standard errors relative to the other model's mean."""
    k = min(ctx.ks)
    out: dict[str, dict[str, Any]] = {}
    for target in ctx.targets:
        models = [m for t, m in lists_of if t == target]
        served = "blend" if blend_serves else (ALS_NEW_NAME if target.endswith("_new") else MAIN_MODEL)
        truth = ctx.truth[target]
        users = [u for u in ctx.groups.get(MAIN_GROUP, []) if truth.get(u)]
        if served not in models or len(users) < 2:
            continue
        others = [m for m in models if m != served and not (m == "blend" and not blend_serves)]
        mine = {
            metric: metrics.per_user(metric, lists_of[(target, served)][MAIN_GROUP], truth, k, users)
            for metric in ("recall", "ndcg")
        }
        against: dict[str, dict[str, dict[str, float]]] = {}
        for other in others:
            against[other] = {}
            for metric, values in mine.items():
                theirs = metrics.per_user(metric, lists_of[(target, other)][MAIN_GROUP], truth, k, users)
                against[other][f"{metric}@{k}"] = metrics.relative_gain(values, theirs)
        out[target] = {"model": served, "k": k, "users": len(users), "against": against}
    return out


def _meta(ctx: EvalContext, params: ModelSettings, seconds: dict[str, float]) -> dict[str, Any]:
    return {
        "cutoff": ctx.split.cutoff.isoformat(),
        "end": ctx.split.end.isoformat(),
        "test_days": round((ctx.split.end - ctx.split.cutoff).total_seconds() / 86400, 3),
        "train_events": ctx.split.train.num_rows,
        "test_events": ctx.split.test.num_rows,
        "warm_users": len(ctx.split.warm_users),
        "cold_users": len(ctx.split.cold_users),
        "catalogue": len(ctx.catalogue),
        "ks": list(ctx.ks),
        "main_metric": {"model": MAIN_MODEL, "group": MAIN_GROUP, "metric": MAIN_METRIC},
        "groups": {g: len(u) for g, u in ctx.groups.items()},
        "params": params.as_dict(),
        "seconds": seconds,
    }


def evaluate_events(
    events: pa.Table,
    items: pa.Table,
    params: ModelSettings | None = None,
    *,
    test_days: int = 30,
    ks: Sequence[int] = (10, 20),
    targets: Sequence[str] = TARGETS,
    models: Sequence[str] = MODELS,
    cutoff: datetime | None = None,
    fit_model: FitModel | None = None,
    progress: bool = False,
    fit_options: Mapping[str, Any] | None = None,
) -> Evaluation:
    """Split, fit every model on the training part and score it on the test window (the whole protocol)."""
    params = params or ModelSettings()
    ctx = build_context(events, items, test_days=test_days, ks=ks, targets=targets, cutoff=cutoff)
    return evaluate_context(ctx, params, models, fit_model=fit_model, progress=progress, fit_options=fit_options)
