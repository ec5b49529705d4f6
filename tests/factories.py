"""Small hand-made tables for tests."""

from __future__ import annotations

from datetime import datetime, timedelta

import pyarrow as pa

from recommender.schema import EVENT_SCHEMA, ITEM_SCHEMA

NOW = datetime(2026, 6, 30, 12)
WEIGHTS = {"view": 1.0, "cart": 4.0, "purchase": 10.0, "return": 0.0}


def ev(user: str, item: str, kind: str, days_ago: float, **more) -> dict:
    """One event ``days_ago`` days before NOW."""
    return {"user_id": user, "item_id": item, "event_type": kind, "timestamp": NOW - timedelta(days=days_ago), **more}


def events(rows: list[dict]) -> pa.Table:
    cols = {name: [r.get(name) for r in rows] for name in EVENT_SCHEMA.names}
    cols["quantity"] = [r.get("quantity", 1.0) for r in rows]
    return pa.table(cols, schema=EVENT_SCHEMA)


def catalogue(rows: list[dict]) -> pa.Table:
    cols = {name: [r.get(name) for r in rows] for name in ITEM_SCHEMA.names}
    cols["available"] = [r.get("available", True) for r in rows]
    return pa.table(cols, schema=ITEM_SCHEMA)
