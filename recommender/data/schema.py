"""The data contract: the canonical event and catalogue tables every module works on.

Loaders and adapters turn input files into these two Arrow tables; everything downstream (weighting, models,
lists, RFM, KPIs, evaluation) reads only these column names and types.
Every time must also be plausible: not later than now (plus a small clock skew) and not before a floor (see
:mod:`recommender.data.clock`).

Events (one row per interaction):

========== ============= ========= =============================================================
column     Arrow type    required  meaning
========== ============= ========= =============================================================
user_id    string        yes       customer or visitor id
item_id    string        yes       product id
event_type string        yes       one of ``EVENT_TYPES`` ("return" only comes from adapters that
                                   read cancellations; it is never counted as a purchase;
                                   "impression" and "click" are feedback, never trained on)
timestamp  timestamp[us] yes       when it happened, UTC, without time zone
quantity   float64       no (1)    units; positive, at most ``MAX_QUANTITY``
price      float64       no        unit price; non-negative, at most ``MAX_PRICE``
order_id   string        no        order/basket id; purchases without one get user_id|timestamp
========== ============= ========= =============================================================

Catalogue (one row per item):

========== ============= ========= =============================================================
item_id    string        yes       product id
title      string        no        display name
category   string        no        category used for per-category lists and filters
price      float64       no        current price (as events)
available  bool          no (true) false hides the item from every list
created_at timestamp[us] no        when the item was added; else first seen in the events
========== ============= ========= =============================================================
"""

from __future__ import annotations

import pyarrow as pa

VIEW, CART, PURCHASE, RETURN = "view", "cart", "purchase", "return"
IMPRESSION, CLICK = "impression", "click"
TRAINING_TYPES: tuple[str, ...] = (VIEW, CART, PURCHASE, RETURN)
"""What the models learn from."""
FEEDBACK_TYPES: tuple[str, ...] = (IMPRESSION, CLICK)
"""Feedback on recommendations (an item shown, an item clicked): kept for the experiment report, never trained on."""
EVENT_TYPES: tuple[str, ...] = TRAINING_TYPES + FEEDBACK_TYPES

EVENT_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("event_type", pa.string()),
        ("timestamp", pa.timestamp("us")),
        ("quantity", pa.float64()),
        ("price", pa.float64()),
        ("order_id", pa.string()),
    ]
)
EVENT_REQUIRED: tuple[str, ...] = ("user_id", "item_id", "event_type", "timestamp")

ITEM_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("title", pa.string()),
        ("category", pa.string()),
        ("price", pa.float64()),
        ("available", pa.bool_()),
        ("created_at", pa.timestamp("us")),
    ]
)
ITEM_REQUIRED: tuple[str, ...] = ("item_id",)

MAX_ID_LENGTH = 128
"""Longest user or item id accepted anywhere (input files, API parameters, cache keys)."""
MAX_TEXT_LENGTH = 1000
"""Longest order id, title or category accepted (a longer field is a bad row, not a megabyte in every list)."""
MAX_QUANTITY = 1e6
"""Most units one event line may carry. Real logs stay far below (the largest wholesale line in Online Retail is
80,995 units); beyond it a value is a typing or export error, and sums of such values overflow to infinity."""
MAX_PRICE = 1e9
"""Highest unit price accepted, in any currency (a billion covers cars and houses in currencies with small units).
With ``MAX_QUANTITY`` a line is worth at most 1e15, so sums over any log stay finite and exact enough."""


def empty_items() -> pa.Table:
    """A catalogue with no rows, for runs without a catalogue file."""
    return ITEM_SCHEMA.empty_table()


def split_feedback(events: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(events the models learn from, feedback events) of one table."""
    import pyarrow.compute as pc

    feedback = pc.is_in(events["event_type"], pa.array(FEEDBACK_TYPES))
    if not pc.any(feedback).as_py():  # the usual case: no copy of a log of millions of events
        return events, events.slice(0, 0)
    return events.filter(pc.invert(feedback)), events.filter(feedback)
