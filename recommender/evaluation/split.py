"""Temporal train/test splits and ground-truth builders for offline evaluation.

Everything works on the canonical event table (see :mod:`recommender.data.schema`) with pyarrow compute;
rows are never shuffled and no event at or after the cutoff ever reaches the training table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recommender.data.schema import CART, PURCHASE, VIEW
from recommender.models.weighting import latest_timestamp

TARGET_KINDS: dict[str, tuple[str, ...]] = {
    "purchase": (PURCHASE,),
    "interaction": (VIEW, CART, PURCHASE),
}
"""Event types that make an item a ground-truth item, per ``targets`` kind ("return" never does)."""


@dataclass(frozen=True)
class Split:
    """A temporal split.

    ``train`` holds the events strictly before ``cutoff``; ``test`` the events in ``[cutoff, end)``.
    ``warm_users`` are the users with any training event, ``cold_users`` the test users without one.
    """

    train: pa.Table
    test: pa.Table
    cutoff: datetime
    warm_users: frozenset[str]
    cold_users: frozenset[str]
    end: datetime


def time_split(events: pa.Table, *, test_days: int, cutoff: datetime | None = None) -> Split:
    """Split ``events`` at ``cutoff`` into train (before) and a ``test_days``-long test window.

    With an explicit ``cutoff`` the test window is ``[cutoff, cutoff + test_days)``. By default the
    cutoff is ``max(timestamp) - test_days`` and the window's end is just past the newest event, so
    the newest event is part of the test set.
    """
    if test_days <= 0:
        raise ValueError(f"test_days must be positive, got {test_days}")
    if events.num_rows == 0:
        raise ValueError("cannot split an empty event table")
    ts = events["timestamp"]
    window = timedelta(days=test_days)
    if cutoff is None:
        newest = pc.max(ts).as_py()
        if newest is None:
            raise ValueError("events have no timestamps")
        cutoff = newest - window
        end = newest + timedelta(microseconds=1)
    else:
        end = cutoff + window
    lo, hi = pa.scalar(cutoff, ts.type), pa.scalar(end, ts.type)
    train = events.filter(pc.less(ts, lo))
    test = events.filter(pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi)))
    warm = _distinct(train["user_id"])
    cold = _distinct(test["user_id"]) - warm
    return Split(train=train, test=test, cutoff=cutoff, warm_users=warm, cold_users=cold, end=end)


def span_days(events: pa.Table) -> int:
    """Whole days from the oldest event to the newest (ValueError without events)."""
    return (latest_timestamp(events) - pc.min(events["timestamp"]).as_py()).days


def last_days(events: pa.Table, days: int) -> pa.Table:
    """The events of the ``days`` days up to the newest one (a shop with a shorter history)."""
    ts = events["timestamp"]
    return events.filter(pc.greater(ts, pa.scalar(pc.max(ts).as_py() - timedelta(days=days), ts.type)))


def targets(test: pa.Table, kind: str) -> dict[str, set[str]]:
    """Ground truth per user: items purchased (``kind="purchase"``) or interacted with
    (``kind="interaction"``: view, cart or purchase) in ``test``.

    Applied to a training table it gives the users' histories (e.g. for ``seen_share``).
    """
    if kind not in TARGET_KINDS:
        raise ValueError(f"unknown target kind {kind!r}; expected one of {sorted(TARGET_KINDS)}")
    return user_item_sets(test, TARGET_KINDS[kind])


def first_basket_targets(train: pa.Table, test: pa.Table) -> dict[str, set[str]]:
    """Next-basket ground truth: for each customer with at least two distinct orders in ``train``,
    the items of their first order in ``test`` (earliest order timestamp; ties by order id).

    Orders are the distinct ``order_id`` values of purchase events (see :func:`order_keys`).
    """
    prior = _purchases(train)
    per_user = prior.group_by("user_id").aggregate([("order_key", "count_distinct")])
    repeat_users = per_user.filter(pc.greater_equal(per_user["order_key_count_distinct"], 2))["user_id"]

    after = _purchases(test)
    after = after.filter(pc.is_in(after["user_id"], value_set=repeat_users.combine_chunks()))
    if after.num_rows == 0:
        return {}
    orders = (
        after.group_by(["user_id", "order_key"])
        .aggregate([("timestamp", "min")])
        .sort_by([("user_id", "ascending"), ("timestamp_min", "ascending"), ("order_key", "ascending")])
    )
    users = orders["user_id"].to_numpy(zero_copy_only=False)
    first_rows = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    first = orders.take(pa.array(first_rows)).select(["user_id", "order_key"])
    basket = after.join(first, keys=["user_id", "order_key"], join_type="inner")
    return user_item_sets(basket, (PURCHASE,))


def order_keys(events: pa.Table) -> pa.ChunkedArray:
    """Order/basket id per row: ``order_id`` where present, else ``user_id|timestamp``."""
    has_orders = "order_id" in events.column_names
    if has_orders and events["order_id"].null_count == 0:  # every row has one: no fallback to format (a third
        return events["order_id"]  # of a second on complete-journey's 1.4 million purchases)
    fallback = pc.binary_join_element_wise(events["user_id"], pc.cast(events["timestamp"], pa.string()), "|")
    return pc.coalesce(events["order_id"], fallback) if has_orders else fallback


def user_item_sets(events: pa.Table, event_types: Iterable[str]) -> dict[str, set[str]]:
    """Distinct items per user among the events of the given types."""
    rows = events.filter(pc.is_in(events["event_type"], value_set=pa.array(list(event_types), pa.string())))
    grouped = rows.select(["user_id", "item_id"]).group_by("user_id").aggregate([("item_id", "distinct")])
    return {
        user: set(items)
        for user, items in zip(grouped["user_id"].to_pylist(), grouped["item_id_distinct"].to_pylist())
        if user is not None
    }


def _purchases(events: pa.Table) -> pa.Table:
    """Purchase rows with an ``order_key`` column."""
    rows = events.filter(pc.equal(events["event_type"], PURCHASE))
    return rows.select(["user_id", "item_id", "event_type", "timestamp"]).append_column("order_key", order_keys(rows))


def _distinct(column: pa.ChunkedArray) -> frozenset[str]:
    return frozenset(v for v in pc.unique(column).to_pylist() if v is not None)
