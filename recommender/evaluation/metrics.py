"""Top-k ranking metrics for offline evaluation.

Inputs are plain dicts: ``recommendations`` maps a user to a ranked list of item ids (best first),
``truth`` maps a user to the set of relevant items, ``history`` to the items the user had interacted
with before the cutoff. Each metric is averaged over the evaluated users: users in ``truth`` (or in
``users`` if given) whose truth set is non-empty. A user without recommendations scores zero.
Duplicate items in a list are dropped (first occurrence kept) before cutting at ``k``.
With no evaluated users every metric is ``nan``.

Definitions for one user, with ``hits_i`` = 1 if the item at rank i (1-based) is relevant and
``T`` = |truth|:

* precision@k = sum(hits) / k  (k, not the list length: short lists are penalised)
* recall@k = sum(hits) / T  (standard recall: not capped at k, so it is < 1 when T > k)
* ndcg@k = DCG / IDCG, DCG = sum_i hits_i / log2(i + 1), IDCG = the same over min(k, T) hits
* map@k: AP = sum_i hits_i * precision@i / min(k, T)
* hit_rate@k = 1 if any hit else 0
* coverage@k = distinct items in the evaluated users' top-k / catalogue size
* seen_share@k = share of the user's top-k items that are in the user's history (0 if no list)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

Recommendations = Mapping[str, Sequence[str]]
Truth = Mapping[str, set[str]]
Users = Iterable[str] | None


def precision_at_k(recommendations: Recommendations, truth: Truth, k: int, users: Users = None) -> float:
    """Mean precision@k: hits in the top k / k."""
    return _mean_metric(_precision, recommendations, truth, k, users)


def recall_at_k(recommendations: Recommendations, truth: Truth, k: int, users: Users = None) -> float:
    """Mean recall@k: hits in the top k / |truth| (not min(k, |truth|))."""
    return _mean_metric(_recall, recommendations, truth, k, users)


def ndcg_at_k(recommendations: Recommendations, truth: Truth, k: int, users: Users = None) -> float:
    """Mean NDCG@k with binary relevance and log2 discounts; ideal DCG over min(k, |truth|) hits."""
    return _mean_metric(_ndcg, recommendations, truth, k, users)


def per_user(metric: str, recommendations: Recommendations, truth: Truth, k: int, users: Sequence[str]) -> np.ndarray:
    """``metric`` (``"ndcg"``, ``"recall"``, ...) of each of ``users`` in order, every one with a non-empty truth set:
    what a paired comparison of two lists for the same customers needs."""
    _check_k(k)
    if any(not truth.get(u) for u in users):
        raise ValueError("every user needs a non-empty truth set")
    hits = _hit_matrix(recommendations, truth, list(users), k)
    return _RANKING_METRICS[metric](hits, np.array([len(truth[u]) for u in users], dtype=np.int64), k)


def map_at_k(recommendations: Recommendations, truth: Truth, k: int, users: Users = None) -> float:
    """Mean average precision@k, each AP normalised by min(k, |truth|)."""
    return _mean_metric(_average_precision, recommendations, truth, k, users)


def hit_rate_at_k(recommendations: Recommendations, truth: Truth, k: int, users: Users = None) -> float:
    """Share of users with at least one relevant item in the top k."""
    return _mean_metric(_hit_rate, recommendations, truth, k, users)


def coverage_at_k(
    recommendations: Recommendations, catalogue_size: int, k: int, users: Iterable[str] | None = None
) -> float:
    """Distinct items in the top k of ``users`` (default: every user in ``recommendations``) /
    ``catalogue_size``."""
    _check_k(k)
    if catalogue_size <= 0:
        raise ValueError(f"catalogue_size must be positive, got {catalogue_size}")
    pool = recommendations.keys() if users is None else users
    items: set[str] = set()
    for user in pool:
        items.update(_top(recommendations.get(user, ()), k))
    return len(items) / catalogue_size


def seen_share_at_k(
    recommendations: Recommendations,
    history: Truth,
    k: int,
    users: Iterable[str] | None = None,
) -> float:
    """Mean share of each user's top-k items that the user had interacted with before, over
    ``users`` (default: every user in ``recommendations``); an empty list counts as 0."""
    _check_k(k)
    pool = list(dict.fromkeys(recommendations.keys() if users is None else users))
    if not pool:
        return float("nan")
    return float(np.mean(_seen_shares(recommendations, history, pool, k)))


def evaluate(
    recommendations: Recommendations,
    truth: Truth,
    *,
    ks: Sequence[int] = (10, 20),
    history: Truth | None = None,
    catalogue_size: int | None = None,
    users: Iterable[str] | None = None,
) -> dict[str, float]:
    """All metrics for every k in ``ks``, averaged over the evaluated users.

    Keys: ``precision@k``, ``recall@k``, ``ndcg@k``, ``map@k``, ``hit_rate@k``, plus
    ``coverage@k`` if ``catalogue_size`` is given and ``seen_share@k`` if ``history`` is given
    (both over the evaluated users), and ``users``: the number of evaluated users.
    """
    if not ks:
        raise ValueError("ks must not be empty")
    for k in ks:
        _check_k(k)
    evaluated = _evaluated_users(truth, users)
    depth = max(ks)
    hits, seen, lengths = _marked(recommendations, truth, evaluated, depth, history)
    n_truth = np.array([len(truth[u]) for u in evaluated], dtype=np.int64)
    out: dict[str, float] = {"users": float(len(evaluated))}
    for k in ks:
        for name, fn in _RANKING_METRICS.items():
            out[f"{name}@{k}"] = _mean(fn(hits, n_truth, k))
        if catalogue_size is not None:
            out[f"coverage@{k}"] = coverage_at_k(recommendations, catalogue_size, k, evaluated)
        if history is not None:
            out[f"seen_share@{k}"] = _mean(_shares(seen, lengths, k))
    return out


def split_repeat_new(truth: Truth, history: Truth) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Split each user's truth into repeat items (in the user's history) and new items (not in it).
    Users whose part is empty are left out of that part."""
    repeat: dict[str, set[str]] = {}
    new: dict[str, set[str]] = {}
    for user, items in truth.items():
        seen = history.get(user, set())
        if r := items & seen:
            repeat[user] = r
        if n := items - seen:
            new[user] = n
    return repeat, new


# --- per-user metric arrays from a hit matrix (users x depth, bool) ---------------------------------


def _precision(hits: np.ndarray, n_truth: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(axis=1) / k


def _recall(hits: np.ndarray, n_truth: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(axis=1) / n_truth


def _ndcg(hits: np.ndarray, n_truth: np.ndarray, k: int) -> np.ndarray:
    discounts = 1.0 / np.log2(np.arange(2, k + 2))  # rank i (1-based) -> 1 / log2(i + 1)
    dcg = hits[:, :k] @ discounts
    idcg = np.cumsum(discounts)[np.minimum(k, n_truth) - 1]
    return dcg / idcg


def _average_precision(hits: np.ndarray, n_truth: np.ndarray, k: int) -> np.ndarray:
    top = hits[:, :k]
    precision_at_rank = np.cumsum(top, axis=1) / np.arange(1, k + 1)
    return (precision_at_rank * top).sum(axis=1) / np.minimum(k, n_truth)


def _hit_rate(hits: np.ndarray, n_truth: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].any(axis=1).astype(np.float64)


MetricFn = Callable[[np.ndarray, np.ndarray, int], np.ndarray]

_RANKING_METRICS: dict[str, MetricFn] = {
    "precision": _precision,
    "recall": _recall,
    "ndcg": _ndcg,
    "map": _average_precision,
    "hit_rate": _hit_rate,
}


# --- helpers ---------------------------------------------------------------------------------------


def _evaluated_users(truth: Truth, users: Iterable[str] | None) -> list[str]:
    pool = truth.keys() if users is None else dict.fromkeys(users)
    return [u for u in pool if truth.get(u)]


def _top(items: Sequence[str], k: int) -> list[str]:
    """First k distinct items, in order."""
    head = list(items[:k])
    if len(set(head)) == len(head) and (len(head) == k or len(items) <= k):  # no repeats: the usual list
        return head
    out: list[str] = []
    seen: set[str] = set()
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
            if len(out) == k:
                break
    return out


def _hit_matrix(recommendations: Recommendations, truth: Truth, users: list[str], depth: int) -> np.ndarray:
    return _marked(recommendations, truth, users, depth)[0]


def _marked(
    recommendations: Recommendations, truth: Truth, users: list[str], depth: int, history: Truth | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hits, seen, lengths): per user and rank of their first ``depth`` distinct items, whether it is in their
    truth and whether in their ``history`` (all False without), and how many items they got; one pass for all."""
    hits = np.zeros((len(users), depth), dtype=bool)
    seen = np.zeros((len(users), depth), dtype=bool)
    lengths = np.zeros(len(users), dtype=np.int64)
    empty: frozenset[str] = frozenset()
    for row, user in enumerate(users):
        top = _top(recommendations.get(user, ()), depth)
        if not top:
            continue
        lengths[row] = len(top)
        relevant = truth.get(user, empty)
        hits[row, : len(top)] = [item in relevant for item in top]
        if history is not None:
            mine = history.get(user, empty)
            seen[row, : len(top)] = [item in mine for item in top]
    return hits, seen, lengths


def _shares(seen: np.ndarray, lengths: np.ndarray, k: int) -> np.ndarray:
    """Share of each user's first ``k`` items marked in ``seen`` (0 for an empty list)."""
    return seen[:, :k].sum(axis=1) / np.maximum(np.minimum(lengths, k), 1)


def _seen_shares(recommendations: Recommendations, history: Truth, users: list[str], k: int) -> np.ndarray:
    _, seen, lengths = _marked(recommendations, {}, users, k, history)
    return _shares(seen, lengths, k)


def _mean_metric(fn: MetricFn, recommendations: Recommendations, truth: Truth, k: int, users: Users) -> float:
    _check_k(k)
    evaluated = _evaluated_users(truth, users)
    hits = _hit_matrix(recommendations, truth, evaluated, k)
    n_truth = np.array([len(truth[u]) for u in evaluated], dtype=np.int64)
    return _mean(fn(hits, n_truth, k))


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _check_k(k: int) -> None:
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")


def _difference(new: np.ndarray, old: np.ndarray) -> tuple[float, float, float]:
    """Mean of the per-customer differences, its standard error and their ratio (unrounded; see paired_gain)."""
    diff = np.asarray(new, dtype=np.float64) - np.asarray(old, dtype=np.float64)
    mean = float(diff.mean()) if len(diff) else 0.0
    stderr = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) >= 2 else 0.0
    z = 0.0 if len(diff) < 2 or mean == 0 else float(np.clip(mean / max(stderr, 1e-12), -1e6, 1e6))
    return mean, stderr, z


def paired_gain(new: np.ndarray, old: np.ndarray) -> dict[str, float]:
    """Mean per-customer gain of ``new`` over ``old`` (one figure per customer, the same customers in order), its
    standard error and their ratio ``z`` (0 without a difference or with fewer than two customers; at most 1e6 in
    size): how the nightly choices (the learned blend, the self-tuned settings) tell a gain from noise."""
    mean, stderr, z = _difference(new, old)
    return {"mean": round(mean, 5), "stderr": round(stderr, 5), "z": round(z, 2)}


def relative_gain(new: np.ndarray, old: np.ndarray) -> dict[str, float]:
    """:func:`paired_gain` with the mean gain and its standard error relative to ``old``'s mean (nan when that is 0):
    how a served list's lead over a baseline reads in per cent."""
    mean, stderr, z = _difference(new, old)
    base = float(np.mean(old)) if len(old) else 0.0
    if base <= 0 or len(new) < 2:
        return {"gain": float("nan"), "stderr": float("nan"), "z": round(z, 2)}
    return {"gain": round(mean / base, 4), "stderr": round(stderr / base, 4), "z": round(z, 2)}


def clearly_better(gain: dict[str, float], min_z: float) -> bool:
    """Whether a :func:`paired_gain` is a gain clearly above noise: positive and at least ``min_z`` standard errors."""
    return gain["mean"] > 0 and gain["z"] >= min_z
