"""TIFU-KNN's parameters chosen on a validation window, never on the window a model is judged on.

The training events are split once more at ``newest - validation_days``: TIFU-KNN learns from the part before and
is scored (``ndcg@10`` on warm customers' purchases) on the validation window. The published settings are tried
first, then a seeded random sample of :data:`TIFU_SPACE`; the best is returned.
"""

from __future__ import annotations

import random
from typing import Any

import pyarrow as pa

from recommender.evaluation import metrics
from recommender.evaluation.split import targets, time_split
from recommender.models.tifu_knn import PUBLISHED, TifuKnn, TifuParams

TIFU_SPACE: dict[str, tuple[Any, ...]] = {
    "group_size": (2, 3, 5, 7, 10, 15),
    "within_decay": (0.8, 0.9, 0.95, 1.0),
    "group_decay": (0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    "k": (50, 100, 300, 800),
    "alpha": (0.5, 0.7, 0.8, 0.9, 0.95),
    "metric": ("euclidean", "cosine"),
}
METRIC = "ndcg@10"


def tune_tifu(
    train: pa.Table,
    *,
    validation_days: int = 30,
    trials: int = 12,
    seed: int = 0,
    start: TifuParams | None = None,
) -> tuple[TifuParams, dict[str, Any]]:
    """The best of ``start``, the published settings and random ones (``trials`` in all) on the validation window,
    with a summary ``{"metric", "validation_cutoff", "users", "trials": [{"params", metric}]}``."""
    split = time_split(train, test_days=validation_days)
    truth = targets(split.test, "purchase")
    users = sorted(u for u, t in truth.items() if t and u in split.warm_users)
    candidates = list(dict.fromkeys([start or TifuParams(), *PUBLISHED.values()]))
    rng = random.Random(seed)
    for _ in range(trials * 20):
        if len(candidates) >= trials:
            break
        pick = TifuParams(**{name: rng.choice(choices) for name, choices in TIFU_SPACE.items()})
        if pick not in candidates:
            candidates.append(pick)
    summary: dict[str, Any] = {"metric": METRIC, "validation_cutoff": split.cutoff.isoformat(), "users": len(users)}
    if not users:
        summary["trials"] = []
        return candidates[0], summary
    scored = [(validation_score(split.train, users, truth, p), p) for p in candidates[:trials]]
    summary["trials"] = [{"params": p.as_dict(), METRIC: v} for v, p in scored]
    best = max(scored, key=lambda vp: vp[0])[1]
    return best, summary


def validation_score(train: pa.Table, users: list[str], truth: dict[str, set[str]], params: TifuParams) -> float:
    """``ndcg@10`` of TIFU-KNN fitted on ``train`` for ``users`` against ``truth`` (customers it cannot score
    count as zero)."""
    lists = {u: [i for i, _ in r] for u, r in TifuKnn(params).fit(train).recommend(users, 10).items()}
    return metrics.evaluate(lists, truth, ks=(10,), users=users).get(METRIC, 0.0)
