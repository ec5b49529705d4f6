"""Small hand-made tables for tests, and settings that point at the test Redis."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from cache.keys import LIVE_SHARDS, Keys
from cache.server import RedisHandle
from recommender.config import Settings, load_settings
from recommender.data.schema import EVENT_SCHEMA, ITEM_SCHEMA

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


def live_backlog(client: Any, keys: Keys) -> int:
    """Live events waiting in the streams (every shard)."""
    return sum(client.xlen(keys.live_stream(shard)) for shard in range(LIVE_SHARDS))


def isolated_settings(handle: RedisHandle, tag: str = "t", **more: Any) -> Settings:
    """Settings for the test Redis under a key prefix of their own (``tag`` + random), so tests never see each other's
    data; ``more`` sets values of any section by name (e.g. ``api_key=...``, ``live_archive_dir=...``)."""
    redis = {
        "url": handle.url,
        "cluster": handle.cluster,
        "data_dir": handle.data_dir or Path("var"),
        "key_prefix": f"{tag}{uuid.uuid4().hex[:8]}",
    }
    options: dict[str, dict[str, Any]] = {"redis": redis}
    for name, value in more.items():
        section = next(s for s, fields in SECTION_FIELDS.items() if name in fields)
        options.setdefault(section, {})[name] = value
    return load_settings(options)


SECTION_FIELDS = {name: set(info.annotation.model_fields) for name, info in Settings.model_fields.items()}


def train_variants(handle: RedisHandle, shop_dir: Path, seed: int, variants: dict[str, Any]) -> dict[str, tuple]:
    """A generated demo shop (300 customers, 120 items) trained once per ``variants`` entry (name -> the
    ``ListParams`` it trains with), each in Redis keys of its own: ``{name: (settings, JobResult)}``."""
    from recommender.data.demo import generate_shop
    from training.job import JobConfig, run_job

    shop = generate_shop(n_users=300, n_items=120, n_categories=6, days=120, seed=seed)
    events, items = shop.write(shop_dir)
    out = {}
    for name, lists in variants.items():
        settings = isolated_settings(handle, name)
        settings_used = settings.replace(model={"lists": lists})
        cfg = JobConfig(events=events, items=items, settings=settings_used, show_progress=False)
        out[name] = (settings, run_job(cfg, handle.client))
    return out
