"""Live events: exactly-once intake by the job (the HTTP side is in tests/api/test_live_events.py)."""

from __future__ import annotations

import pytest
from factories import isolated_settings, live_backlog

import training.job as job_module
from cache.keys import Keys
from recommender.config import AlsParams, ListParams
from recommender.data.demo import generate_shop
from training.job import JobConfig, run_job


@pytest.fixture()
def redis_handle(redis_backend):
    """Every test here runs on one Redis server and on a Redis Cluster."""
    return redis_backend


@pytest.fixture()
def shop(tmp_path):
    shop = generate_shop(n_users=300, n_items=120, n_categories=6, days=120, seed=11)
    shop.paths = shop.write(tmp_path / "shop")
    return shop


@pytest.fixture()
def settings(redis_handle, tmp_path):
    return isolated_settings(redis_handle, "live", live_archive_dir=tmp_path / "live")


def train(redis_handle, settings, shop):
    events, items = shop.paths
    # A 120-item shop: 16 factors (64 would overfit it and blur the categories).
    cfg = JobConfig(
        events=events,
        items=items,
        settings=settings.replace(model={"als": AlsParams(factors=16), "lists": ListParams(list_size=50)}),
        show_progress=False,
    )
    return run_job(cfg, redis_handle.client)


def test_events_sent_during_a_run_land_in_the_next_run_exactly_once(redis_handle, settings, shop, monkeypatch):
    import pyarrow as pa

    from cache.live import ingest
    from recommender.data.loading import ROW, validate_events

    keys = Keys(settings.redis.key_prefix)

    def batch(user, n):
        raw = pa.table(
            {
                "user_id": [user] * n,
                "item_id": ["I00001"] * n,
                "event_type": ["view"] * n,
                "timestamp": ["2026-06-29 12:00:00"] * n,
                ROW: list(range(1, n + 1)),
            }
        )
        return validate_events(raw, "test")[0]

    ingest(redis_handle.client, keys, batch("before-run", 3))
    real_fit = job_module.fit_als

    def fit_while_events_arrive(*args, **kwargs):
        ingest(redis_handle.client, keys, batch("during-run", 2))
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(job_module, "fit_als", fit_while_events_arrive)
    first = train(redis_handle, settings, shop)
    monkeypatch.setattr(job_module, "fit_als", real_fit)
    assert first.counts["live_events"] == 3
    assert live_backlog(redis_handle.client, keys) == 2  # taken entries trimmed, the new ones wait
    second = train(redis_handle, settings, shop)
    third = train(redis_handle, settings, shop)
    assert second.counts["live_events"] == third.counts["live_events"] == 5
    assert second.counts["events"] == first.counts["events"] + 2
    assert live_backlog(redis_handle.client, keys) == 0


def test_a_run_killed_after_archiving_does_not_count_events_twice(redis_handle, settings):
    import pyarrow as pa

    from cache.live import ingest, take_live_events
    from recommender.data.loading import ROW, validate_events

    keys = Keys(settings.redis.key_prefix)
    raw = pa.table(
        {
            "user_id": ["u"] * 4,
            "item_id": ["i"] * 4,
            "event_type": ["view"] * 4,
            "timestamp": ["2026-06-29 12:00:00"] * 4,
            ROW: [1, 2, 3, 4],
        }
    )
    ingest(redis_handle.client, keys, validate_events(raw, "t")[0])
    taken, upto = take_live_events(redis_handle.client, keys, settings.live_dir)
    redis_handle.client.delete(keys.live_archived)  # killed before the pointer was kept: the archive file says it
    again, upto_again = take_live_events(redis_handle.client, keys, settings.live_dir)
    assert taken.num_rows == again.num_rows == 4 and upto == upto_again
