"""Live events over HTTP: keyed, all-or-nothing ingestion; picks and recently viewed items follow a visitor at once."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest
from factories import isolated_settings, live_backlog
from fastapi.testclient import TestClient

from api.app import create_app
from cache.keys import Keys
from recommender.config import AlsParams, ListParams
from recommender.data.demo import generate_shop
from training.job import JobConfig, run_job

KEY = "test-write-key"


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
    return isolated_settings(redis_handle, "live", api_key=KEY, live_archive_dir=tmp_path / "live", max_events_batch=50)


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


@pytest.fixture()
def client(redis_handle, settings, shop):
    train(redis_handle, settings, shop)
    with TestClient(create_app(settings)) as c:
        yield c


def post(client, events, key=KEY):
    return client.post("/events", json={"events": events}, headers={"X-API-Key": key} if key else {})


def category_items(shop, category):
    items = shop.items
    return items.filter(pc.equal(items["category"], category))["item_id"].to_pylist()


def test_unknown_visitor_viewing_one_category_gets_picks_from_it(client, shop):
    cats = dict(zip(shop.items["item_id"].to_pylist(), shop.items["category"].to_pylist()))
    category = shop.items["category"][0].as_py()
    viewed = category_items(shop, category)[:3]
    assert (
        post(client, [{"user_id": "fresh-visitor", "item_id": i, "event_type": "view"} for i in viewed]).status_code
        == 200
    )
    r = client.get("/recommend", params={"user_id": "fresh-visitor", "n": 5}).json()
    assert r["source"] == "session"
    picks = [i["item_id"] for i in r["items"]]
    assert not set(picks) & set(viewed)
    assert cats[picks[0]] == category and sum(cats[i] == category for i in picks) >= 4
    recent = client.get("/recently-viewed/fresh-visitor", params={"n": 10}).json()
    assert recent["source"] == "recently_viewed" and [i["item_id"] for i in recent["items"]] == viewed[::-1]


def test_known_user_gets_live_events_blended_and_bought_items_vanish_at_once(client, shop):
    user = shop.events["user_id"][0].as_py()
    before = client.get("/recommend", params={"user_id": user, "n": 5}).json()
    assert before["source"] == "personal"
    top = before["items"][0]["item_id"]
    assert (
        post(
            client, [{"user_id": user, "item_id": top, "event_type": "purchase", "quantity": 1, "price": 9.5}]
        ).status_code
        == 200
    )
    after = client.get("/recommend", params={"user_id": user, "n": 5}).json()
    assert after["source"] == "personal+session"
    assert top not in {i["item_id"] for i in after["items"]}


def test_batch_with_one_bad_event_is_refused_whole(client, redis_handle, settings):
    keys = Keys(settings.redis.key_prefix)
    before = live_backlog(redis_handle.client, keys)
    events = [{"user_id": "v1", "item_id": "I00001", "event_type": "view"} for _ in range(4)]
    events[2] = {"user_id": "v1", "item_id": "I00001", "event_type": "teleport"}
    r = post(client, events)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail["errors"] == [
        {
            "position": 2,
            "field": "event_type",
            "value": "teleport",
            "reason": "is not one of view, cart, purchase, return, impression, click",
        }
    ]
    assert "event 2 event_type='teleport'" in detail["message"]
    assert live_backlog(redis_handle.client, keys) == before
    assert client.get("/recently-viewed/v1").json()["items"] == []


def test_writing_needs_the_key_and_batches_are_bounded(client, redis_handle, settings):
    one = [{"user_id": "v2", "item_id": "I00001", "event_type": "view"}]
    assert post(client, one, key=None).status_code == 401
    assert post(client, one, key="wrong").status_code == 401
    too_many = post(client, one * 51)
    assert too_many.status_code == 413 and "at most 50" in too_many.json()["detail"]
    ok = post(client, one)
    assert ok.status_code == 200 and ok.json()["accepted"] == 1
    open_settings = settings.replace(api={"api_key": None})
    with TestClient(create_app(open_settings)) as c:
        r = post(c, one)
        assert r.status_code == 403 and "RECO_API_KEY" in r.json()["detail"]
