"""Temporal split and ground-truth builders."""

from __future__ import annotations

from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recommender.data.schema import EVENT_SCHEMA
from recommender.evaluation.split import first_basket_targets, order_keys, targets, time_split

T0 = datetime(2024, 3, 1)


def day(d: float) -> datetime:
    return T0 + timedelta(days=d)


def events(rows: list[tuple], schema: pa.Schema = EVENT_SCHEMA) -> pa.Table:
    """rows: (user, item, event_type, day, order_id)."""
    cols = {
        "user_id": [r[0] for r in rows],
        "item_id": [r[1] for r in rows],
        "event_type": [r[2] for r in rows],
        "timestamp": [day(r[3]) for r in rows],
        "quantity": [1.0] * len(rows),
        "price": [10.0] * len(rows),
        "order_id": [r[4] for r in rows],
    }
    return pa.table({f.name: cols[f.name] for f in schema}, schema=schema)


LOG = events(
    [
        ("u1", "a", "view", 0, None),
        ("u1", "a", "purchase", 1, "o1"),
        ("u2", "b", "cart", 2, None),
        ("u1", "b", "purchase", 9.5, "o2"),  # test
        ("u2", "c", "view", 9.99, None),  # test: exactly at the cutoff below
        ("u3", "a", "purchase", 11, "o3"),  # test, cold user
        ("u2", "a", "return", 11.5, "o4"),
        ("u4", "d", "view", 3, None),  # train only
        ("u1", "c", "view", 12, None),  # newest event
    ]
)


def _leak_free(split) -> None:
    train_ts, test_ts = split.train["timestamp"], split.test["timestamp"]
    cutoff = pa.scalar(split.cutoff, pa.timestamp("us"))
    assert pc.all(pc.less(train_ts, cutoff)).as_py()
    assert pc.all(pc.greater_equal(test_ts, cutoff)).as_py()
    assert pc.max(train_ts).as_py() < split.cutoff <= pc.min(test_ts).as_py()


def test_default_cutoff_keeps_newest_event_in_test():
    split = time_split(LOG, test_days=3)
    assert split.cutoff == day(9)  # newest event (day 12) - 3 days
    _leak_free(split)
    assert split.train.num_rows + split.test.num_rows == LOG.num_rows
    assert pc.max(split.test["timestamp"]).as_py() == day(12)
    assert split.warm_users == {"u1", "u2", "u4"}
    assert split.cold_users == {"u3"}
    # order is preserved (no shuffling)
    assert split.train["timestamp"].to_pylist() == [day(0), day(1), day(2), day(3)]


def test_explicit_cutoff_bounds_test_window():
    cutoff = day(9.99)
    split = time_split(LOG, test_days=2, cutoff=cutoff)
    _leak_free(split)
    assert split.end == day(11.99)
    # test window [9.99, 11.99): the event exactly at the cutoff is in test, later ones are dropped
    assert split.test["timestamp"].to_pylist() == [day(9.99), day(11), day(11.5)]
    assert "u1" in split.warm_users and split.cold_users == {"u3"}
    assert pc.max(split.train["timestamp"]).as_py() == day(9.5)


def test_split_rejects_bad_input():
    with pytest.raises(ValueError):
        time_split(LOG, test_days=0)
    with pytest.raises(ValueError):
        time_split(LOG.slice(0, 0), test_days=1)


def test_targets():
    split = time_split(LOG, test_days=3)
    assert targets(split.test, "purchase") == {"u1": {"b"}, "u3": {"a"}}
    # views, carts and purchases; returns never count
    assert targets(split.test, "interaction") == {"u1": {"b", "c"}, "u2": {"c"}, "u3": {"a"}}
    with pytest.raises(ValueError):
        targets(split.test, "clicks")


BASKETS = events(
    [
        # uA: two orders before the cutoff (day 10)
        ("uA", "p", "purchase", 0, "o1"),
        ("uA", "q", "purchase", 1, "o2"),
        # uB: one order with two lines
        ("uB", "p", "purchase", 0, "o3"),
        ("uB", "q", "purchase", 0, "o3"),
        # uC: no order ids; two timestamps -> two orders
        ("uC", "p", "purchase", 2, None),
        ("uC", "q", "purchase", 3, None),
        # uD: the same order id on two days is still one order; views are not orders
        ("uD", "p", "purchase", 2, "o4"),
        ("uD", "q", "purchase", 3, "o4"),
        ("uD", "r", "view", 4, None),
        # after the cutoff
        ("uA", "w", "view", 10.5, None),
        ("uA", "x", "purchase", 12, "o5"),  # second order (id sorts first, but later in time)
        ("uA", "y", "purchase", 12, "o5"),
        ("uA", "z", "purchase", 11, "o6"),  # first order
        ("uB", "x", "purchase", 11, "o7"),
        ("uC", "x", "purchase", 11, None),  # same timestamp -> same basket
        ("uC", "y", "purchase", 11, None),
        ("uC", "z", "purchase", 12, None),
        ("uD", "x", "purchase", 11, "o8"),
        ("uE", "x", "purchase", 11, "o9"),  # new customer
    ]
)


def test_first_basket_targets():
    split = time_split(BASKETS, test_days=5, cutoff=day(10))
    assert first_basket_targets(split.train, split.test) == {"uA": {"z"}, "uC": {"x", "y"}}


def test_first_basket_targets_without_order_id_column():
    schema = pa.schema([f for f in EVENT_SCHEMA if f.name != "order_id"])
    log = events(
        [
            ("u", "p", "purchase", 0, None),
            ("u", "q", "purchase", 1, None),
            ("u", "x", "purchase", 11, None),
            ("u", "y", "purchase", 12, None),
        ],
        schema,
    )
    split = time_split(log, test_days=5, cutoff=day(10))
    assert first_basket_targets(split.train, split.test) == {"u": {"x"}}


def test_order_keys_are_the_order_ids_and_the_customer_and_time_where_there_is_none() -> None:
    when = [datetime(2024, 1, 1, 9), datetime(2024, 1, 2, 9)]
    rows = {"user_id": ["a", "b"], "timestamp": pa.array(when, pa.timestamp("us"))}
    every = pa.table({**rows, "order_id": ["o1", "o2"]})
    assert order_keys(every).to_pylist() == ["o1", "o2"]
    some = pa.table({**rows, "order_id": pa.array(["o1", None], pa.string())})
    assert order_keys(some).to_pylist() == ["o1", "b|2024-01-02 09:00:00.000000"]
    assert order_keys(pa.table(rows)).to_pylist() == ["a|2024-01-01 09:00:00.000000", "b|2024-01-02 09:00:00.000000"]
