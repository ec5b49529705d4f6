"""Warm-started ALS fits: start from an earlier fit's factors (matched by user and item id) and run a few iterations.

The promotion gate fits the candidate settings on the events before its holdout every night. Those events change by
one day from one night to the next, so last night's gate fit is an excellent starting point: a few iterations from it
land where a full fit from random factors lands (measured in docs/PERFORMANCE.md), at a fraction of the cost. The
start must come from a fit that saw nothing after the new cutoff (else holdout purchases leak into the model it
judges), with the same settings; :meth:`StoredFactors.usable` checks both.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from recommender.config import AlsParams, ModelSettings
from recommender.models.weighting import Interactions, positions


def fingerprint(**settings: Any) -> str:
    """A short hash of ``settings`` (JSON with sorted keys)."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def settings_fingerprint(model: ModelSettings) -> str:
    """The fingerprint of everything that shapes a fit's factors: the ALS settings but iterations, the weights and
    the half-life. Stored factors start a fit only under the same fingerprint (:meth:`Stamp.usable`)."""
    als = model.als.model_dump(exclude={"iterations"})
    return fingerprint(als=als, weights=model.weights.as_dict(), half_life=model.half_life_days)


@dataclass(frozen=True)
class Stamp:
    """The cutoff of the events a gate fit saw and the fingerprint of its settings: what decides whether the fit may
    start (:meth:`usable`) or stand for the serving version tonight, read without its factors (:meth:`read`)."""

    cutoff: datetime
    settings: str

    def usable(self, cutoff: datetime, settings: str, max_age_days: int) -> bool:
        """Same settings, and fitted on events up to a cutoff no later than ``cutoff`` and not too long before it."""
        age = (cutoff - self.cutoff).total_seconds() / 86400
        return self.settings == settings and 0 <= age <= max_age_days

    @classmethod
    def read(cls, path: Path) -> Stamp | None:
        """The stamp of the factors kept at ``path`` (an npz member is read on its own: the factors stay on disk);
        None when there are none or they are unreadable."""
        if not path.exists():
            return None
        try:
            with np.load(path) as f:
                meta = json.loads(str(f["meta"]))
            return cls(datetime.fromisoformat(meta["cutoff"]), meta["settings"])
        except (OSError, ValueError, KeyError):  # unreadable or from another layout: start cold
            return None


@dataclass
class StoredFactors:
    """A fit's factors by id, the cutoff of the events it saw, and the fingerprint of its settings, as kept on disk
    between nights (the gate's in ``<data dir>/gate/``, the nightly fit's in ``<data dir>/fit/``)."""

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
    def load(cls, path: Path, stamp: Stamp | None = None) -> StoredFactors | None:
        """The factors kept at ``path`` (ids as NumPy strings: a million Python strings would cost more than the
        factors); None when there are none, they are unreadable, or (given ``stamp``, read earlier in the run) they
        are no longer the factors that stamp described: replaced or removed meanwhile."""
        found = Stamp.read(path)
        if found is None or (stamp is not None and found != stamp):
            return None
        stamp = found
        try:
            with np.load(path) as f:
                return cls(f["user_ids"], f["item_ids"], f["users"], f["items"], stamp.cutoff, stamp.settings)
        except (OSError, ValueError, KeyError):
            return None

    @property
    def stamp(self) -> Stamp:
        return Stamp(self.cutoff, self.settings)

    def usable(self, cutoff: datetime, settings: str, max_age_days: int) -> bool:
        """See :meth:`Stamp.usable`."""
        return self.stamp.usable(cutoff, settings, max_age_days)


def _start(ids: np.ndarray, prev_ids: np.ndarray, prev: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Factors for ``ids``: the earlier fit's row for a known id, implicit's random start (uniform * 0.01) otherwise."""
    out = rng.random((len(ids), prev.shape[1]), dtype=np.float32) * 0.01
    rows = _rows(ids, prev_ids)
    known = rows >= 0
    out[known] = prev[rows[known]]
    return out


def fit_from(
    inter: Interactions, params: AlsParams, start: StoredFactors | None, iterations: int
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


@dataclass
class CarriedOver:
    """An earlier fit carried over to tonight's ids (:func:`carry_over`): the model, and which of its customers and
    items the earlier fit knew (the others were folded in, or are zero)."""

    model: AlternatingLeastSquares
    known_users: np.ndarray
    known_items: np.ndarray


def carry_over(inter: Interactions, params: AlsParams, earlier: StoredFactors) -> CarriedOver:
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
        model.item_factors, known_items = _known(inter.item_ids, earlier.item_ids, earlier.items)
        new = np.flatnonzero(~known_users)
        if len(new):
            users[new] = model.recalculate_user(new, inter.matrix[new])
        model.user_factors = users
    return CarriedOver(model, known_users, known_items)


def earlier_model(inter: Interactions, params: AlsParams, earlier: StoredFactors) -> AlternatingLeastSquares:
    """The model of :func:`carry_over`."""
    return carry_over(inter, params, earlier).model


def fit_on(carried: CarriedOver, inter: Interactions, params: AlsParams, iterations: int) -> AlternatingLeastSquares:
    """The fit of :func:`fit_from` from the earlier fit ``carried`` came from, started in ``carried``'s own arrays
    instead of a second set: rows the earlier fit did not know get the same random start :func:`fit_from` gives
    them (drawn in the same order, a block of rows at a time), the others already hold its rows. The arrays are
    trained in place: ``carried.model`` is this fit afterwards. At a million customers x 64 factors a set of
    customer factors is 256 MB; the gate used to hold three at once (the stored start, the candidate's, the
    serving version's)."""
    if carried.known_users.shape[0] != inter.matrix.shape[0] or carried.known_items.shape[0] != inter.matrix.shape[1]:
        raise ValueError("the carried-over fit is of other ids than the matrix")
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=params.alpha,
            iterations=iterations,
            random_state=params.random_state,
        )
        rng = np.random.default_rng(params.random_state)
        model.user_factors = _restart_unknown(carried.model.user_factors, carried.known_users, rng)
        model.item_factors = _restart_unknown(carried.model.item_factors, carried.known_items, rng)
        carried.model = model
        model.fit(inter.matrix, show_progress=False)
    return model


_BLOCK = 65_536


def _restart_unknown(factors: np.ndarray, known: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``factors`` with the rows not ``known`` set to implicit's random start, the values :func:`_start` draws
    for them (the generator's stream is the same drawn in blocks of rows; one block at a time, not a whole set)."""
    for lo in range(0, len(factors), _BLOCK):
        block = rng.random((min(_BLOCK, len(factors) - lo), factors.shape[1]), dtype=np.float32) * 0.01
        new = ~known[lo : lo + len(block)]
        factors[lo : lo + len(block)][new] = block[new]
    return factors


def _rows(ids: np.ndarray, prev_ids: np.ndarray) -> np.ndarray:
    """Each id's row in ``prev_ids`` (-1 for an id it does not hold), matched in Arrow: a Python dict of a million
    customer ids costs more than the factors' own memory and time."""
    return positions(pa.chunked_array([pa.array(ids, pa.string())]), prev_ids)


def _known(ids: np.ndarray, prev_ids: np.ndarray, prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Factors for ``ids`` (the earlier fit's row for a known id, zeros otherwise) and which ids it knew."""
    out = np.zeros((len(ids), prev.shape[1]), dtype=np.float32)
    rows = _rows(ids, prev_ids)
    known = rows >= 0
    out[known] = prev[rows[known]]
    return out, known
