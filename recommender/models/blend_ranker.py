"""The learned blend's ranker: one LightGBM LambdaRank model over every source's candidates.

Trained on the shop's own recent outcomes: the candidates and features of customers at a cut-off
(:mod:`recommender.models.blend_candidates`, events before it only) labelled 1 when the customer bought the item in
the window after it. A customer is one query group; LambdaRank optimises NDCG of each customer's list directly.
:func:`ranked_picks` turns the scored candidates into lists that keep a reason on every slot (and the expected
date for items due again).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import lightgbm as lgb
import numpy as np

from recommender.models.blend_candidates import FEATURES, CandidateBatch
from recommender.models.repeat import DUE_AGAIN, GOES_WITH, NextPick, Pick, as_next_pick, pick_id

_REPEAT, _DUE, _BOUGHT = FEATURES.index("repeat_score"), FEATURES.index("due_in_days"), FEATURES.index("bought_days")


@dataclass(frozen=True)
class RankerParams:
    """LightGBM settings: small and fixed, so a nightly fit costs seconds. ``threads`` 0: every core (OpenMP's
    default). LightGBM's deterministic row-wise training gives the same trees on any number of threads, or leaf values
    a few units in the last digits apart (measured on the shared logs and a generated shop: scores at most 1e-11
    apart), and on 2 cores it takes half the time of one."""

    trees: int = 150
    learning_rate: float = 0.05
    leaves: int = 31
    min_child_samples: int = 50
    truncation: int = 20
    seed: int = 0
    threads: int = 0


@dataclass
class BlendRanker:
    """A trained ranker: scores candidate rows, higher is better."""

    booster: lgb.Booster
    importance: dict[str, float] = field(default_factory=dict)

    def score(self, batch: CandidateBatch) -> np.ndarray:
        """The score of every row of ``batch``: rows are scored independently, so on every core (OpenMP's default
        thread count) with the same result as on one."""
        if not len(batch.cols):
            return np.array([], dtype=np.float64)
        return np.asarray(self.booster.predict(batch.X, num_threads=0), dtype=np.float64)

    def to_bytes(self) -> bytes:
        """The booster as LightGBM's model string: what a published version stores."""
        return self.booster.model_to_string().encode()

    @classmethod
    def from_bytes(cls, raw: bytes, importance: Mapping[str, float] | None = None) -> BlendRanker:
        """A ranker stored by :meth:`to_bytes`; ValueError when ``raw`` is not one over today's :data:`FEATURES`.

        LightGBM aborts the process on some damaged model strings (a truncated one, for example) instead of raising:
        check ``raw`` against a checksum kept elsewhere before calling this."""
        try:
            booster = lgb.Booster(model_str=raw.decode())
        except (UnicodeDecodeError, lgb.basic.LightGBMError) as exc:
            raise ValueError(f"not a LightGBM model ({str(exc).strip()[:200]})") from None
        if booster.feature_name() != list(FEATURES):
            raise ValueError(f"it ranks on {booster.feature_name()}, not on today's features {list(FEATURES)}")
        return cls(booster, dict(importance or {}))


def labels(batch: CandidateBatch, item_ids: np.ndarray, truth: Mapping[str, set[str]]) -> np.ndarray:
    """1 for each candidate the customer bought in the label window, else 0 (one membership test over the batch's
    (customer, column) keys, not a loop over its rows)."""
    if not len(batch.cols):
        return np.zeros(0, dtype=np.int32)
    column = {i: c for c, i in enumerate(item_ids.tolist())}
    n_items = len(item_ids)
    keys = np.array(
        [k * n_items + column[i] for k, u in enumerate(batch.users) for i in truth.get(u, ()) if i in column],
        dtype=np.int64,
    )
    return np.isin(batch.user_pos.astype(np.int64) * n_items + batch.cols, keys).astype(np.int32)


def train_ranker(X: np.ndarray, y: np.ndarray, groups: np.ndarray, params: RankerParams | None = None) -> BlendRanker:
    """LambdaRank on query ``groups`` (rows per customer, in order); raises ValueError without a positive label."""
    p = params or RankerParams()
    if not y.any():
        raise ValueError("no candidate was bought in the label window: nothing to learn the blend from")
    data = lgb.Dataset(X, label=y, group=groups, feature_name=list(FEATURES), free_raw_data=True)
    booster = lgb.train(
        {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [10],
            "learning_rate": p.learning_rate,
            "num_leaves": p.leaves,
            "min_child_samples": p.min_child_samples,
            "lambdarank_truncation_level": p.truncation,
            "num_threads": p.threads,
            "deterministic": True,
            "force_row_wise": True,
            "seed": p.seed,
            "verbose": -1,
        },
        data,
        num_boost_round=p.trees,
    )
    gain = booster.feature_importance(importance_type="gain")
    total = float(gain.sum()) or 1.0
    return BlendRanker(booster, {name: round(float(g) / total, 4) for name, g in zip(FEATURES, gain)})


def ranked_picks(
    batch: CandidateBatch, scores: np.ndarray, item_ids: np.ndarray, as_of: datetime, n: int
) -> dict[str, list[NextPick]]:
    """Each customer's candidates best first, ``n`` at most, as picks with a reason: ``due_again`` (with the
    expected date) for items they bought that the repeat model expects again, ``goes_with_your_purchases`` for the
    rest. Scores are the ranker's, squashed to (0, 1) so they read like the other lists' scores."""
    out: dict[str, list[NextPick]] = {u: [] for u in batch.users}
    if not len(batch.cols):
        return out
    order = np.lexsort((batch.cols, -scores, batch.user_pos))
    grouped = batch.user_pos[order]
    starts = np.r_[0, np.flatnonzero(np.diff(grouped)) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    top = order[rank < n]  # only each customer's first n rows become picks
    squashed = np.round(1.0 / (1.0 + np.exp(-scores[top])), 5).tolist()
    names = item_ids[batch.cols[top]].astype(str).tolist()
    due_again = ((batch.X[top, _BOUGHT] > 0) & (batch.X[top, _REPEAT] > 0)).tolist()
    due_in = batch.X[top, _DUE].astype(np.int64).tolist()  # whole days, truncated as int() does
    today = as_of.date()
    dates = {d: (today + timedelta(days=d)).isoformat() for d in set(due_in)}
    reasons = [DUE_AGAIN if again else GOES_WITH for again in due_again]
    due = [dates[days] if again else None for again, days in zip(due_again, due_in)]
    picks = list(map(NextPick, names, squashed, reasons, due))  # in customer order: each one's rows are adjacent
    ends = np.cumsum(np.bincount(batch.user_pos[top], minlength=len(batch.users))).tolist()
    for user, start, end in zip(batch.users, [0, *ends], ends):
        out[user] = picks[start:end]
    return out


def with_fallback(picks: Sequence[NextPick], fallback: Iterable[Pick], n: int) -> list[NextPick]:
    """``picks`` topped up to ``n`` with ``fallback`` picks not already in them, discovery pairs as "goes with your
    purchases" picks (``fallback`` is not iterated when ``picks`` fill the list: it may compute its picks when first
    asked; only the picks taken are wrapped, most of a policy list's head is in ``picks`` already)."""
    out = list(picks[:n])
    if len(out) >= n:
        return out
    taken = {p.item_id for p in picks}
    for p in fallback:
        if len(out) >= n:
            break
        item = pick_id(p)
        if item not in taken:
            out.append(as_next_pick(p))
            taken.add(item)
    return out
