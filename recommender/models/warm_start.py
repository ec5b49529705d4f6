"""Warm-started ALS fits: start from an earlier fit's factors (matched by user and item id) and run a few iterations.

The promotion gate fits the candidate settings on the events before its holdout every night. Those events change by
one day from one night to the next, so last night's gate fit is an excellent starting point: a few iterations from it
land where a full fit from random factors lands (measured in docs/PERFORMANCE.md), at a fraction of the cost. The
start must come from a fit that saw nothing after the new cutoff (else holdout purchases leak into the model it
judges), with the same settings; :meth:`GateFactors.usable` checks both.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from recommender.config import AlsParams
from recommender.models.weighting import Interactions


def fingerprint(**settings: Any) -> str:
    """A short hash of everything that shapes the factors (ALS settings but iterations, weights, half-life)."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class GateFactors:
    """A fit's factors by id, the cutoff of the events it saw, and the fingerprint of its settings."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    users: np.ndarray
    items: np.ndarray
    cutoff: datetime
    settings: str

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            user_ids=self.user_ids.astype(str),
            item_ids=self.item_ids.astype(str),
            users=self.users,
            items=self.items,
            meta=np.array(json.dumps({"cutoff": self.cutoff.isoformat(), "settings": self.settings})),
        )
        tmp.replace(path)  # a killed run never leaves a half-written start behind

    @classmethod
    def load(cls, path: Path) -> GateFactors | None:
        if not path.exists():
            return None
        try:
            with np.load(path) as f:
                meta = json.loads(str(f["meta"]))
                return cls(
                    f["user_ids"].astype(object),
                    f["item_ids"].astype(object),
                    f["users"],
                    f["items"],
                    datetime.fromisoformat(meta["cutoff"]),
                    meta["settings"],
                )
        except (OSError, ValueError, KeyError):  # unreadable or from another layout: start cold
            return None

    def usable(self, cutoff: datetime, settings: str, max_age_days: int) -> bool:
        """Same settings, and fitted on events up to a cutoff no later than ``cutoff`` and not too long before it."""
        age = (cutoff - self.cutoff).total_seconds() / 86400
        return self.settings == settings and 0 <= age <= max_age_days


def _start(ids: np.ndarray, prev_ids: np.ndarray, prev: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Factors for ``ids``: the earlier fit's row for a known id, implicit's random start (uniform * 0.01) otherwise."""
    out = rng.random((len(ids), prev.shape[1]), dtype=np.float32) * 0.01
    index = {v: j for j, v in enumerate(prev_ids.tolist())}
    pairs = [(k, index[v]) for k, v in enumerate(ids.tolist()) if v in index]
    if pairs:
        mine, theirs = np.array(pairs).T
        out[mine] = prev[theirs]
    return out


def fit_from(
    inter: Interactions, params: AlsParams, start: GateFactors | None, iterations: int
) -> AlternatingLeastSquares:
    """ALS on ``inter`` starting from ``start``'s factors (``iterations`` iterations), or a full fit without one."""
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=params.alpha,
            iterations=iterations if start is not None else params.iterations,
            random_state=params.random_state,
        )
        if start is not None:
            rng = np.random.default_rng(params.random_state)
            model.user_factors = _start(inter.user_ids, start.user_ids, start.users, rng)
            model.item_factors = _start(inter.item_ids, start.item_ids, start.items, rng)
        model.fit(inter.matrix, show_progress=False)
    return model


def earlier_model(inter: Interactions, params: AlsParams, earlier: GateFactors) -> AlternatingLeastSquares:
    """The earlier fit as a model of ``inter``'s ids, not trained any further: its factors for the customers and
    items it knew; items new since get zero factors (it could not recommend them); customers new since are folded
    in from their rows of ``inter`` (one least-squares step against its item factors, as serving does for visitors
    it has not seen). Scoring it on tonight's holdout measures the serving version's quality on the same
    customers and purchases as tonight's candidate."""
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=earlier.items.shape[1],
            regularization=params.regularization,
            alpha=params.alpha,
            iterations=1,
            random_state=params.random_state,
        )
        users, known_users = _known(inter.user_ids, earlier.user_ids, earlier.users)
        model.item_factors = _known(inter.item_ids, earlier.item_ids, earlier.items)[0]
        new = np.flatnonzero(~known_users)
        if len(new):
            users[new] = model.recalculate_user(new, inter.matrix[new])
        model.user_factors = users
    return model


def _known(ids: np.ndarray, prev_ids: np.ndarray, prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Factors for ``ids`` (the earlier fit's row for a known id, zeros otherwise) and which ids it knew."""
    out = np.zeros((len(ids), prev.shape[1]), dtype=np.float32)
    index = {v: j for j, v in enumerate(prev_ids.tolist())}
    rows = np.array([index.get(v, -1) for v in ids.tolist()], dtype=np.int64)
    known = rows >= 0
    out[known] = prev[rows[known]]
    return out, known
