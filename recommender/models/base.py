"""The interface every recommender shares: fit on the event log, then the top-k item ids per user.

As implicit's ``RecommenderBase`` and RecTools' ``ModelBase``: the evaluation, the promotion gate and tuning treat
ALS, the served personal list and every baseline alike through it, and pick them from a registry by name
(:mod:`recommender.evaluation.registry`), never by testing the name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

R = TypeVar("R", bound="Recommender")


class Recommender(ABC):
    """Fit once on a canonical event table, then rank items for any users."""

    serves_unknown_users: ClassVar[bool] = True
    """Whether users without a training event get a list (a fallback); ALS alone has nothing for them."""

    @abstractmethod
    def fit(self: R, train: pa.Table, **kw: Any) -> R:
        """Learn from ``train``. Common keywords: ``items`` (the catalogue: unavailable items are never listed);
        keywords a model does not use are accepted and ignored."""

    @abstractmethod
    def recommend(self, user_ids: Iterable[str], k: int) -> dict[str, list[str]]:
        """Top-k item ids per user, best first (users the model has nothing for may be missing)."""

    @abstractmethod
    def recommend_excluding(
        self, user_ids: Sequence[str], k: int, exclude: Mapping[str, Collection[str]]
    ) -> dict[str, list[str]]:
        """:meth:`recommend` without each user's ``exclude`` items (e.g. what they already bought), still k long
        whenever the model has that many."""


def unavailable_items(items: pa.Table | None) -> frozenset[str]:
    """Items the catalogue marks unavailable (none without a catalogue)."""
    if items is None:
        return frozenset()
    return frozenset(items.filter(pc.invert(pc.fill_null(items["available"], True)))["item_id"].to_pylist())
