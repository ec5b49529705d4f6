"""Operations: API keys, admin rollback, body limits, Prometheus metrics, JSON request logs without secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from factories import isolated_settings
from fastapi.testclient import TestClient

from api.app import create_app
from api.monitoring import json_formatter, log
from cache.keys import Keys
from cache.publisher import NoPreviousVersion, Publisher, rollback
from recommender.config import AlsParams, ListParams
from recommender.data.demo import generate_shop
from training.job import JobConfig, run_job

WRITE, READ = "write-key-123", "read-key-456"


@pytest.fixture(scope="module")
def published(redis_handle, tmp_path_factory):
    shop = generate_shop(n_users=150, n_items=60, n_categories=4, days=90, seed=5)
    events, items = shop.write(tmp_path_factory.mktemp("ops"))
    settings = isolated_settings(redis_handle, "ops", api_key=WRITE, max_body_bytes=5_000)
    cfg = JobConfig(
        events=events,
        items=items,
        settings=settings.replace(model={"als": AlsParams(factors=8), "lists": ListParams(list_size=20)}),
        show_progress=False,
    )
    first = run_job(cfg, redis_handle.client)
    second = run_job(cfg, redis_handle.client)
    return settings, first.version, second.version, shop


def test_read_endpoints_open_by_default_and_keyed_when_configured(published):
    settings, *_ = published
    with TestClient(create_app(settings)) as c:
        assert c.get("/bestsellers").status_code == 200
    keyed = settings.replace(api={"read_api_key": READ})
    with TestClient(create_app(keyed)) as c:
        assert c.get("/bestsellers").status_code == 401
        assert c.get("/bestsellers", headers={"X-API-Key": "nope"}).status_code == 401
        assert c.get("/bestsellers", headers={"X-API-Key": READ}).status_code == 200
        assert c.get("/bestsellers", headers={"X-API-Key": WRITE}).status_code == 200
        for open_path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert c.get(open_path).status_code == 200, open_path


def test_admin_rollback_needs_the_write_key(published):
    settings, first, second, _ = published
    with TestClient(create_app(settings)) as c:
        assert c.post("/admin/rollback").status_code == 401
        assert c.post("/admin/rollback", headers={"X-API-Key": "wrong"}).status_code == 401
        r = c.post("/admin/rollback", headers={"X-API-Key": WRITE})
        assert r.status_code == 200 and r.json()["version"] == first
        assert c.get("/readyz").json()["version"] == first
        assert c.post("/admin/rollback", headers={"X-API-Key": WRITE}).json()["version"] == second


def test_rollback_without_a_previous_version_is_409_and_changes_nothing(redis_handle):
    settings = isolated_settings(redis_handle, "ops1", api_key=WRITE)
    keys = Keys(settings.redis.key_prefix)
    only = Publisher(redis_handle.client, keys)
    only.commit({"source": "test"})
    with TestClient(create_app(settings)) as c:
        r = c.post("/admin/rollback", headers={"X-API-Key": WRITE})
        assert r.status_code == 409 and r.json() == {"detail": "There is no previous version to roll back to."}
        assert c.get("/readyz").json()["version"] == only.version
    with pytest.raises(NoPreviousVersion):
        rollback(redis_handle.client, keys)


def test_oversized_bodies_are_refused_with_a_clear_message(published):
    settings, *_ = published
    with TestClient(create_app(settings)) as c:
        big = {"user_ids": ["u" * 100] * 60}
        r = c.post("/next-purchase/batch", json=big)
        assert r.status_code == 413 and "larger than 5000 bytes" in r.json()["detail"]
        chunked = c.post(
            "/next-purchase/batch",
            content=(json.dumps(big).encode() for _ in range(1)),
            headers={"content-type": "application/json"},
        )
        assert chunked.status_code == 413


@contextmanager
def captured_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    log.addHandler(handler)
    try:
        yield stream
    finally:
        log.removeHandler(handler)


def request_lines(stream: io.StringIO) -> list[dict]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("message") == "request"]


@pytest.mark.parametrize("mode", ["notable", "all", "off"])
def test_request_log_modes(published, mode):
    settings, _, _, shop = published
    user = shop.events["user_id"][0].as_py()
    with captured_log() as stream, TestClient(create_app(settings.replace(api={"request_log": mode}))) as c:
        assert c.get("/recommend", params={"user_id": user}).status_code == 200
        assert c.get("/similar/no-such-item").status_code == 404
        assert (
            c.post(
                "/events",
                json={"events": [{"user_id": "v", "item_id": "I00001", "event_type": "view"}]},
                headers={"X-API-Key": WRITE},
            ).status_code
            == 200
        )
    logged = [(r["route"], r["status"]) for r in request_lines(stream)]
    expected = {
        "all": [("/recommend", 200), ("/similar/{item_id}", 404), ("/events", 200)],
        "notable": [("/similar/{item_id}", 404), ("/events", 200)],  # errors and writes; fast reads only in metrics
        "off": [],
    }[mode]
    assert logged == expected


def test_slow_requests_are_notable(published):
    settings, _, _, shop = published
    with captured_log() as stream, TestClient(create_app(settings.replace(api={"slow_request_ms": 1e-6}))) as c:
        c.get("/healthz")
    assert [(r["route"], r["status"]) for r in request_lines(stream)] == [("/healthz", 200)]


def test_metrics_count_requests_latency_cache_hits_and_logs_hold_no_key(published):
    settings, _, _, shop = published
    user = shop.events["user_id"][0].as_py()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    log.addHandler(handler)
    with TestClient(create_app(settings.replace(api={"request_log": "all"}))) as c:
        c.get("/recommend", params={"user_id": user})
        c.get("/recommend", params={"user_id": "nobody-at-all"})
        c.post(
            "/events",
            json={"events": [{"user_id": "v", "item_id": "I00001", "event_type": "view"}]},
            headers={"X-API-Key": WRITE},
        )
        text = c.get("/metrics").text
    assert 'reco_requests_total{method="GET",route="/recommend",status="200"} 2.0' in text
    assert 'reco_request_duration_seconds_count{route="/recommend"} 2.0' in text
    assert 'reco_cache_lookups_total{list="personal",result="hit"} 1.0' in text
    assert 'reco_cache_lookups_total{list="personal",result="miss"} 1.0' in text
    assert "reco_fallbacks_total" in text
    log.removeHandler(handler)
    err = stream.getvalue()
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("message") == "request"]
    assert {"method", "route", "status", "ms"} <= set(requests[0])
    assert any(r["route"] == "/events" and r["status"] == 200 for r in requests)
    assert WRITE not in err
