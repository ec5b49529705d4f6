"""What the dashboard shows beside the lists: each customer's latest events, and who buys an item again and how often.

Both are computed by the nightly job with DuckDB over the canonical events and published with the version.
"Buying again" counts distinct purchase days, as the repeat model does (several lines of one order are one).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import duckdb
import pyarrow as pa

from recommender.data.schema import PURCHASE

RECENT_PER_KIND = 5
"""Latest purchases, and latest other events (views, carts, returns), kept per customer."""
KIND_CODES = {"view": "v", "cart": "c", "purchase": "p", "return": "r"}
"""One letter per event type in stored histories (they are kept for every customer: bytes count)."""
KINDS = {code: kind for kind, code in KIND_CODES.items()}
TOP_REPEAT_BUYERS = 10
BUY_COUNT_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("1", 1, 1),
    ("2", 2, 2),
    ("3", 3, 3),
    ("4-5", 4, 5),
    ("6-9", 6, 9),
    ("10+", 10, None),
)
"""Buyers of an item by the number of days they bought it on."""


def recent_events(events: pa.Table, per_kind: int = RECENT_PER_KIND) -> Iterator[tuple[str, list[list[Any]]]]:
    """(user_id, events) for every customer with a purchase: their latest ``per_kind`` purchases and latest
    ``per_kind`` other events, newest first, each ``[item_id, kind code, unix seconds]`` plus ``quantity, price`` for
    purchases and returns (see :data:`KIND_CODES`, :func:`expand`)."""
    return histories(recent_event_rows(events, per_kind))


def histories(rows: pa.Table) -> Iterator[tuple[str, list[list[Any]]]]:
    """:func:`recent_events` from the rows of :func:`recent_event_rows` (the query and the Python part apart, so the
    job can run the query in a thread of its own). The rows become Python values a batch at a time: as tuples, a
    shop's histories took three times the memory of the table."""
    for user_id, group in itertools.groupby(_tuples(rows), key=lambda r: r[0]):
        yield user_id, [_compact(*r[1:]) for r in group]


def _tuples(rows: pa.Table, batch: int = 65_536) -> Iterator[tuple[Any, ...]]:
    for part in rows.to_batches(max_chunksize=batch):
        yield from zip(*(column.to_pylist() for column in part.columns))


def recent_event_rows(events: pa.Table, per_kind: int = RECENT_PER_KIND) -> pa.Table:
    """The rows behind :func:`recent_events`, ordered by customer (user id, item id, event type, epoch seconds,
    quantity, price)."""
    con = duckdb.connect()
    try:
        con.register("t", events.select(["user_id", "item_id", "event_type", "timestamp", "quantity", "price"]))
        rows = con.sql(  # a relation's Arrow table: execute() would copy the rows once more
            f"""
            WITH buyers AS (SELECT DISTINCT user_id FROM t WHERE event_type = '{PURCHASE}'),
            ranked AS (
                SELECT t.*, row_number() OVER (
                    PARTITION BY user_id, event_type = '{PURCHASE}' ORDER BY timestamp DESC, item_id
                ) AS k
                FROM t SEMI JOIN buyers USING (user_id)
            )
            SELECT user_id, item_id, event_type, CAST(epoch(timestamp) AS BIGINT), quantity, price
            FROM ranked WHERE k <= ? ORDER BY user_id, timestamp DESC, item_id
            """,
            params=[per_kind],
        ).to_arrow_table()
    finally:
        con.close()
    return rows


def _compact(item_id: str, kind: str, seconds: int, quantity: float | None, price: float | None) -> list[Any]:
    if kind in ("purchase", "return"):
        return [item_id, KIND_CODES[kind], seconds, quantity, price]
    return [item_id, KIND_CODES.get(kind, kind), seconds]


def expand(row: list[Any]) -> dict[str, Any]:
    """A stored history row as ``{item_id, event_type, timestamp (ISO, UTC, seconds), quantity, price}``."""
    item_id, code, seconds, *rest = row
    quantity, price = rest if rest else (None, None)
    if isinstance(seconds, str):  # the first release of histories stored ISO times and full event types
        when = seconds
    else:
        when = datetime.fromtimestamp(seconds, tz=timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")
    return {
        "item_id": item_id,
        "event_type": KINDS.get(code, code),
        "timestamp": when,
        "quantity": quantity,
        "price": price,
    }


def item_repeat_stats(events: pa.Table, top: int = TOP_REPEAT_BUYERS) -> Iterator[tuple[str, dict[str, Any]]]:
    """(item_id, stats) for every item bought at least once: ``buyers``, ``repeat_buyers`` (bought it on 2+ days),
    ``repeat_rate``, ``units``, ``purchase_days``, ``median_gap_days`` (median over repeat buyers of their mean days
    between purchase days), ``buy_counts`` (buyers per number of purchase days, see :data:`BUY_COUNT_BUCKETS`) and
    ``top_repeat_buyers`` (``[user_id, days, mean gap]``, most days first)."""
    return repeat_stats(item_repeat_rows(events, top))


def item_repeat_rows(events: pa.Table, top: int = TOP_REPEAT_BUYERS) -> list[tuple[Any, ...]]:
    """The rows behind :func:`item_repeat_stats`, ordered by item."""
    buckets = ", ".join(
        f"count(*) FILTER (WHERE days >= {lo}{'' if hi is None else f' AND days <= {hi}'})"
        for _, lo, hi in BUY_COUNT_BUCKETS
    )
    con = duckdb.connect()
    try:
        con.register("t", events.select(["user_id", "item_id", "event_type", "timestamp", "quantity"]))
        rows = con.sql(  # a relation's Arrow table: execute() would copy the rows once more
            f"""
            WITH per AS (
                SELECT item_id, user_id, count(DISTINCT CAST(timestamp AS DATE)) AS days,
                       sum(coalesce(quantity, 1)) AS units,
                       date_diff('day', min(CAST(timestamp AS DATE)), max(CAST(timestamp AS DATE))) AS span
                FROM t WHERE event_type = '{PURCHASE}' GROUP BY item_id, user_id
            )
            SELECT item_id, count(*) AS buyers, count(*) FILTER (WHERE days >= 2) AS repeat_buyers,
                   sum(units) AS units, sum(days) AS purchase_days,
                   median(span / (days - 1)) FILTER (WHERE days >= 2) AS median_gap,
                   list([user_id, CAST(days AS VARCHAR), CAST(round(span / (days - 1), 1) AS VARCHAR)]
                        ORDER BY days DESC, user_id) FILTER (WHERE days >= 2)[1:{top}] AS top,
                   {buckets}
            FROM per GROUP BY item_id ORDER BY item_id
            """
        ).fetchall()
    finally:
        con.close()
    return rows


def repeat_stats(rows: list[tuple[Any, ...]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """:func:`item_repeat_stats` from the rows of :func:`item_repeat_rows`."""
    labels = [label for label, _, _ in BUY_COUNT_BUCKETS]
    for item_id, buyers, repeaters, units, days, gap, top_rows, *counts in rows:
        yield (
            item_id,
            {
                "buyers": buyers,
                "repeat_buyers": repeaters,
                "repeat_rate": round(repeaters / buyers, 4) if buyers else 0.0,
                "units": float(units or 0),
                "purchase_days": int(days or 0),
                "median_gap_days": None if gap is None else round(float(gap), 1),
                "buy_counts": dict(zip(labels, counts)),
                "top_repeat_buyers": [[u, int(d), float(g)] for u, d, g in top_rows or []],
            },
        )
