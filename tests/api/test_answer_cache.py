"""Kept answers (api.answer_cache) through the API on a real Redis: a repeated request is answered from kept bytes
with a recommendation id of its own, and never once the version, the rules, a rule's time window or the visitor's
live events would change the answer."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

import pyarrow.compute as pc
import pytest
from factories import isolated_settings
from fastapi.testclient import TestClient

from api.app import create_app
from recommender.config import AlsParams, ListParams
from recommender.data.demo import generate_shop
from recommender.serving.experiment import parse_rec_id
from training.job import JobConfig, run_job

WRITE, READ = "write-key", "read-key"
KEY = {"X-API-Key": WRITE}
HOUR = 3_600_000  # ms: the pointer copy never expires within a test, so only what the worker is told counts


@pytest.fixture(scope="module")
def published(redis_handle, tmp_path_factory):
    """Two versions of one shop (the second current), so a rollback has somewhere to go."""
    shop = generate_shop(n_users=150, n_items=60, n_categories=4, days=90, seed=5)
    events, items = shop.write(tmp_path_factory.mktemp("answers"))
    settings = isolated_settings(redis_handle, "answers", api_key=WRITE, pointer_ttl_ms=HOUR)
    cfg = JobConfig(
        events=events,
        items=items,
        settings=settings.replace(model={"als": AlsParams(factors=8), "lists": ListParams(list_size=20)}),
        show_progress=False,
    )
    run_job(cfg, redis_handle.client)
    run_job(cfg, redis_handle.client)
    buyers = shop.events.filter(pc.equal(shop.events["event_type"], "purchase"))["user_id"].to_pylist()
    return settings, sorted(set(buyers))


@pytest.fixture()
def api(published):
    settings, _ = published
    with TestClient(create_app(settings)) as client:
        yield listening(client)


def listening(client: TestClient) -> TestClient:
    """Wait until the worker has read the live index whole: until then every visitor may have live events, and no
    kept answer is sent."""
    deadline = time.monotonic() + 30
    while not client.app.state.services.reader.live.complete:
        assert time.monotonic() < deadline, "the worker never subscribed to the announcements"
        time.sleep(0.01)
    return client


def kept(client, result: str = "hit") -> int:
    text = client.get("/metrics").text
    found = re.search(rf'reco_answer_cache_answers_total{{result="{result}"}} ([0-9.]+)', text)
    return int(float(found.group(1))) if found else 0


def without_rec_id(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k != "rec_id"}


def items_of(client, path: str, **params) -> list[str]:
    return [i["item_id"] for i in client.get(path, params=params).json()["items"]]


def test_a_repeated_request_is_answered_from_kept_bytes_and_counted_like_any(api, published):
    _, buyers = published
    params = {"user_id": buyers[0], "n": 5}
    first = api.get("/recommend", params=params)
    second = api.get("/recommend", params=params)
    assert kept(api) == 1 and kept(api, "miss") == 1
    assert second.status_code == 200 and second.headers["content-type"] == "application/json"
    assert without_rec_id(second.json()) == without_rec_id(first.json())
    assert parse_rec_id(second.json()["rec_id"]).kind == "recommend"
    text = api.get("/metrics").text
    assert 'reco_requests_total{method="GET",route="/recommend",status="200"} 2.0' in text
    assert 'reco_cache_lookups_total{list="personal",result="hit"} 2.0' in text
    assert api.get("/recommend", params={**params, "n": 6}).json()["items"][:5] == first.json()["items"]
    assert kept(api) == 1  # another query string is another answer


def test_next_purchase_keeps_its_documented_shape(api, published):
    _, buyers = published
    first = api.get(f"/next-purchase/{buyers[1]}")
    second = api.get(f"/next-purchase/{buyers[1]}")
    assert kept(api) == 1
    body = second.json()
    assert list(body) == ["source", "version", "user_id", "strategy", "segment", "items", "rec_id", "variant"]
    assert without_rec_id(body) == without_rec_id(first.json())
    assert all(list(i) == ["item_id", "score", "title", "category", "price", "reason", "due"] for i in body["items"])


def test_rules_and_unavailable_items_count_on_the_next_request(api, published):
    _, buyers = published
    params = {"user_id": buyers[2], "n": 5}
    shown = items_of(api, "/recommend", **params)
    assert api.put("/rules/deny", json={"kind": "exclude", "item_ids": [shown[0]]}, headers=KEY).status_code == 200
    assert shown[0] not in items_of(api, "/recommend", **params)
    assert api.post("/items", json=[{"item_id": shown[1], "available": False}], headers=KEY).status_code == 200
    assert shown[1] not in items_of(api, "/recommend", **params)
    api.delete("/rules/deny", headers=KEY)
    api.post("/items", json=[{"item_id": shown[1], "available": True}], headers=KEY)
    assert items_of(api, "/recommend", **params) == shown
    assert kept(api) == 0


def test_a_rule_window_that_opens_ends_a_kept_answer(api, published):
    _, buyers = published
    params = {"user_id": buyers[3], "n": 5}
    shown = items_of(api, "/recommend", **params)
    starts = datetime.now(timezone.utc) + timedelta(seconds=4)  # room for two requests on a loaded machine
    rule = {"kind": "exclude", "item_ids": [shown[0]], "starts": starts.isoformat()}
    assert api.put("/rules/soon", json=rule, headers=KEY).status_code == 200
    assert items_of(api, "/recommend", **params) == shown  # not yet: built again under the new generation, kept
    assert items_of(api, "/recommend", **params) == shown and kept(api) == 1
    time.sleep(max(0.0, (starts - datetime.now(timezone.utc)).total_seconds()) + 0.05)
    assert shown[0] not in items_of(api, "/recommend", **params)
    api.delete("/rules/soon", headers=KEY)


def test_a_rollback_ends_kept_answers(api, published):
    _, buyers = published
    params = {"user_id": buyers[4], "n": 5}
    before = api.get("/recommend", params=params).json()["version"]
    back = api.post("/admin/rollback", headers=KEY).json()["version"]
    try:
        assert back != before and api.get("/recommend", params=params).json()["version"] == back
    finally:
        api.post("/admin/rollback", headers=KEY)
    assert api.get("/recommend", params=params).json()["version"] == before


def test_live_events_reach_a_visitor_whose_answer_was_kept(api, published):
    _, buyers = published
    params = {"user_id": buyers[5], "n": 5}
    api.get("/recommend", params=params)
    assert "session" not in api.get("/recommend", params=params).json()["source"] and kept(api) == 1
    event = {"user_id": buyers[5], "item_id": items_of(api, "/bestsellers")[0], "event_type": "view"}
    assert api.post("/events", json={"events": [event]}, headers=KEY).status_code == 200
    assert "session" in api.get("/recommend", params=params).json()["source"]
    assert kept(api) == 1


def test_with_a_read_key_a_kept_answer_still_needs_it(published):
    settings, buyers = published
    with TestClient(create_app(settings.replace(api={"read_api_key": READ}))) as client:
        listening(client)
        params = {"user_id": buyers[6]}
        assert client.get("/recommend", params=params, headers={"X-API-Key": READ}).status_code == 200
        assert client.get("/recommend", params=params).status_code == 401
        assert client.get("/recommend", params=params, headers={"X-API-Key": "nope"}).status_code == 401
        assert client.get("/recommend", params=params, headers={"X-API-Key": WRITE}).status_code == 200
        assert kept(client) == 1


def test_nothing_is_kept_with_no_memory_for_it(published):
    settings, buyers = published
    with TestClient(create_app(settings.replace(api={"answer_cache_mb": 0}))) as client:
        for _ in range(2):
            assert client.get("/recommend", params={"user_id": buyers[7]}).status_code == 200
        assert kept(client) == 0 and kept(client, "miss") == 0
