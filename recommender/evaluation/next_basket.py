"""Next-basket evaluation of the next-purchase list against the next real order.

Protocol (as in "A Next Basket Recommendation Reality Check"): split the log in time at a cut-off; for every
customer with at least two orders before it, the truth is the set of items of their first order after it
(within ``test_days``, see :func:`recommender.evaluation.split.first_basket_targets`). Every model ranks items from
the events before the cut-off only; recall@k and NDCG@k are computed with
:func:`recommender.evaluation.metrics.evaluate` over all target items, over the repeat items (bought before the
cut-off) and over the new items, each over the customers who have such items.

Models:

``next_purchase``          the published list: :func:`recommender.serving.policy.next_purchase` on the repeat model,
                           exploring with the customer's ALS list without their purchases (ALS fitted on the
                           training events exactly as the nightly job does)
``repeat_only``            the repeat model alone (every candidate, no exploration, no score threshold)
``personal_top_frequency`` the customer's most often bought items (baselines.PersonalTopFrequency)
``tifu_knn``               TIFU-KNN with the published Ta-Feng settings (baselines.TifuKNN)
``most_recent``            the customer's most recently bought items (baselines.MostRecentItems)
``als``                    ALS top-k with bought items allowed
``global_popularity``      most bought items overall (baselines.GlobalPopularity)

The two personal baselines are filled from the popularity ranking when the customer has fewer than k items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recommender.config import AlsParams, EventWeights, ModelSettings
from recommender.data.dataset import Dataset
from recommender.evaluation import metrics
from recommender.evaluation.baselines import GlobalPopularity, MostRecentItems, PersonalTopFrequency, TifuKNN
from recommender.evaluation.split import first_basket_targets, targets, time_split
from recommender.models.als import fit_als
from recommender.models.repeat import repeat_candidates
from recommender.models.tifu_knn import PUBLISHED as TIFU_PUBLISHED
from recommender.models.weighting import Interactions, build_interactions, purchase_matrix
from recommender.serving.lists import personal_picks
from recommender.serving.policy import next_purchase

MODELS: tuple[str, ...] = (
    "next_purchase",
    "repeat_only",
    "personal_top_frequency",
    "tifu_knn",
    "most_recent",
    "als",
    "global_popularity",
)
DEFAULT_HORIZON_DAYS = 30


def evaluate_next_basket(
    data: Dataset | pa.Table,
    *,
    test_days: int = 30,
    cutoff: datetime | None = None,
    k: Sequence[int] = (10,),
    models: Sequence[str] = MODELS,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
    explore_share: float | None = None,
    repeat_params: dict[str, float] | None = None,
    als: AlsParams | None = None,
    weights: dict[str, float] | None = None,
    half_life_days: float | None = None,
    fit_model: Callable[[Interactions], Any] | None = None,
) -> dict[str, Any]:
    """Run the next-basket protocol; returns a JSON-ready dict.

    ``cutoff`` defaults to ``newest event - test_days``. ``horizon_days``, ``repeat_params`` (keywords of
    :func:`recommender.models.repeat.repeat_candidates`) and ``explore_share`` (None: the default of
    :func:`recommender.serving.policy.next_purchase`) configure the next-purchase list; ``als``,
    ``weights`` and ``half_life_days`` the ALS fit (defaults: the job's settings); ``fit_model`` replaces the ALS
    fit itself (:data:`recommender.evaluation.protocol.FitModel`).

    Result: ``{"next_basket": {model: {"recall@10": .., "ndcg@10": .., "repeat_recall@10": ..,
    "repeat_ndcg@10": .., "new_recall@10": .., "new_ndcg@10": ..}, ...}, "next_basket_setup": {...}}``.
    """
    unknown = set(models) - set(MODELS)
    if unknown:
        raise ValueError(f"unknown next-basket models {sorted(unknown)}; known: {list(MODELS)}")
    ks = tuple(sorted({int(x) for x in k}))
    depth = max(ks)
    events = data.events if isinstance(data, Dataset) else data
    events = events.filter(pc.is_in(events["event_type"], value_set=pa.array(["view", "cart", "purchase"])))
    split = time_split(events, test_days=test_days, cutoff=cutoff)
    train = split.train
    truth = first_basket_targets(train, split.test)
    history = targets(train, "purchase")
    repeat_truth, new_truth = metrics.split_repeat_new(truth, history)
    users = sorted(truth)

    fit = {"als": als, "weights": weights, "half_life_days": half_life_days, "fit_model": fit_model}
    lists = _model_lists(train, split.cutoff, users, depth, models, horizon_days, explore_share, repeat_params, fit)
    results = {name: _scores(lists[name], (truth, repeat_truth, new_truth), ks) for name in models}

    n_items = sum(len(v) for v in truth.values())
    setup = {
        "cutoff": split.cutoff.isoformat(sep=" "),
        "test_days": test_days,
        "train_events": train.num_rows,
        "users": len(truth),
        "users_with_repeat_items": len(repeat_truth),
        "users_with_new_items": len(new_truth),
        "mean_basket_size": round(n_items / len(truth), 2) if truth else 0.0,
        "repeat_item_share": round(sum(len(v) for v in repeat_truth.values()) / n_items, 4) if n_items else 0.0,
        "horizon_days": horizon_days,
        "explore_share": explore_share if explore_share is not None else _default_share(),
        "repeat_params": dict(repeat_params or {}),
    }
    return {"next_basket": results, "next_basket_setup": setup}


def _model_lists(
    train: pa.Table,
    cutoff: datetime,
    users: list[str],
    depth: int,
    models: Sequence[str],
    horizon_days: float,
    explore_share: float | None,
    repeat_params: dict[str, float] | None,
    fit: dict[str, Any],
) -> dict[str, dict[str, list[str]]]:
    """Each model's top-``depth`` list per user, learnt from ``train`` only."""
    lists: dict[str, dict[str, list[str]]] = {}
    if {"next_purchase", "repeat_only"} & set(models):
        repeats = repeat_candidates(train, cutoff, horizon_days, **(repeat_params or {}))
        if "repeat_only" in models:
            lists["repeat_only"] = {u: [p.item_id for p in repeats.due_items(u, depth, min_score=0.0)] for u in users}
    if {"next_purchase", "als"} & set(models):
        explore, als_lists = _als_lists(train, cutoff, users, depth, **fit)
        if "als" in models:
            lists["als"] = als_lists
        if "next_purchase" in models:
            share = {} if explore_share is None else {"explore_share": explore_share}
            lists["next_purchase"] = {
                u: [p.item_id for p in next_purchase(repeats, u, explore.get(u, []), depth, **share)] for u in users
            }
    baselines = {
        "personal_top_frequency": lambda: PersonalTopFrequency(fill_popular=True),
        "tifu_knn": lambda: TifuKNN(TIFU_PUBLISHED["tafeng"]),
        "most_recent": lambda: MostRecentItems(fill_popular=True),
        "global_popularity": lambda: GlobalPopularity(),
    }
    for name, make in baselines.items():
        if name in models:
            lists[name] = make().fit(train).recommend(users, depth)
    return lists


def _scores(
    recs: dict[str, list[str]], truths: tuple[dict[str, set[str]], ...], ks: tuple[int, ...]
) -> dict[str, float]:
    """recall@k and ndcg@k over all target items, the repeat items and the new items."""
    row: dict[str, float] = {}
    for prefix, part in zip(("", "repeat_", "new_"), truths):
        scores = metrics.evaluate(recs, part, ks=ks)
        for x in ks:
            row[f"{prefix}recall@{x}"] = round(scores[f"recall@{x}"], 4)
            row[f"{prefix}ndcg@{x}"] = round(scores[f"ndcg@{x}"], 4)
    return row


def _als_lists(
    train: pa.Table,
    as_of: datetime,
    users: list[str],
    n: int,
    als: AlsParams | None,
    weights: dict[str, float] | None,
    half_life_days: float | None,
    fit_model: Callable[[Interactions], Any] | None = None,
) -> tuple[dict[str, list[tuple[str, float]]], dict[str, list[str]]]:
    """ALS fitted as the job fits it: (explore lists without purchases, top-n with purchases allowed) per user."""
    weights = weights or EventWeights().as_dict()
    half_life = half_life_days if half_life_days is not None else ModelSettings().half_life_days
    # build_interactions decays from ``as_of``; the cut-off itself is just after the newest training event.
    inter = build_interactions(train, weights, half_life, as_of - timedelta(microseconds=1))
    model = fit_model(inter) if fit_model else fit_als(inter.matrix, als or AlsParams())
    wanted = set(users)
    bought = purchase_matrix(train, inter)
    explore = {u: ranked for u, ranked in personal_picks(model, inter, n, bought, _no_items()) if u in wanted}
    top = {u: [i for i, _ in ranked] for u, ranked in personal_picks(model, inter, n, None, _no_items()) if u in wanted}
    return explore, top


def _default_share() -> float:
    import inspect

    return float(inspect.signature(next_purchase).parameters["explore_share"].default)


def _no_items() -> np.ndarray:
    return np.array([], dtype=np.int32)
