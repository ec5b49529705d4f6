"""The job's blend step: learn the ranker on the gate's holdout, and build the blended lists when it won.

The ranker learns from the events before the promotion gate's holdout (the last ``gate_days``) and the purchases in
it, reusing the gate's ALS fit on exactly those events (so a night pays no extra ALS fit); without a gate fit it fits
one itself. :func:`recommender.evaluation.blend_learning.learn_blend` decides, on customers held out of its training,
whether the blend beats the current policy; the manifest's ``blend`` block says what it measured and chose.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from recommender.config import ModelSettings
from recommender.evaluation.blend_learning import BlendOutcome, blended, learn_blend
from recommender.evaluation.split import time_split
from recommender.models.als_recommender import AlsFit, AlsRecommender
from recommender.models.blend_candidates import CandidateSources
from recommender.models.repeat import NextPick, RepeatIndex
from recommender.models.weighting import Interactions, interaction_matrix, latest_timestamp, purchase_matrix
from recommender.serving.blended import recent_buyers
from recommender.serving.lists import hidden_item_indices

BlendLists = Callable[[list[str], dict[str, list[NextPick]]], dict[str, list[NextPick]]]
"""(customers, their policy lists) -> their blended lists."""


def learn(
    events: pa.Table,
    items: pa.Table,
    settings: ModelSettings,
    gate_days: int,
    gate_fit: tuple[Interactions, Any] | None,
) -> tuple[BlendOutcome | None, dict[str, Any]]:
    """The night's ranker and the manifest's ``blend`` block."""
    lists = settings.lists
    if not lists.blend:
        return None, {"skipped": "off (RECO_BLEND=false)"}
    span = latest_timestamp(events) - pc.min(events["timestamp"]).as_py()
    if span.days < 2 * gate_days:
        return None, {"skipped": f"less than {2 * gate_days} days of history to learn the blend on"}
    split = time_split(events, test_days=gate_days)
    if gate_fit is not None:
        inter, model = gate_fit
        fit = AlsFit(
            inter,
            model,
            purchase_matrix(split.train, inter),
            interaction_matrix(split.train, inter),
            hidden_item_indices(items, inter),
            latest_timestamp(split.train),
        )
    else:
        als = AlsRecommender(settings.als, settings.weights.as_dict(), settings.half_life_days)
        fit = als.fit(split.train, items=items).fitted
    outcome = learn_blend(split.train, split.test, items, fit, settings, max_customers=lists.blend_customers)
    block = dict(outcome.report)
    block["decision"] = (
        "the blend serves" if outcome.chosen else "the policy serves (the blend did not beat it on validation)"
    )
    return outcome, block


def blend_lists(
    outcome: BlendOutcome | None,
    events: pa.Table,
    items: pa.Table,
    inter: Interactions,
    model: Any,
    bought: sp.csr_matrix,
    hidden: np.ndarray,
    repeats: RepeatIndex,
    n: int,
) -> BlendLists | None:
    """What builds the served blended lists from the run's own fit, or None when the policy serves."""
    if outcome is None or not outcome.chosen or outcome.ranker is None:
        return None
    ranker = outcome.ranker
    fit = AlsFit(inter, model, bought, bought, hidden, latest_timestamp(events))
    sources = CandidateSources(events, items, fit, repeats)
    return lambda users, fallback: blended(sources, ranker, users, fallback, n)


def blend_rows(events: pa.Table, inter: Interactions, days: int) -> np.ndarray:
    """Matrix rows of customers who bought within ``days`` of the newest event (their lists are precomputed)."""
    users = recent_buyers(events, latest_timestamp(events), days) if days > 0 else frozenset()
    return np.array(sorted(inter.user_index[u] for u in users if u in inter.user_index), dtype=np.int64)
