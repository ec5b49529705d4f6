"""Merchandising controls end to end: POST /items, rules, diversity and reasons through the API on a real Redis."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pyarrow.compute as pc
import pytest
from factories import isolated_settings
from fastapi.testclient import TestClient

from api.app import create_app
from cache import merch
from cache.keys import Keys
from recommender.config import ListParams
from recommender.data.demo import generate_shop
from recommender.serving.merchandising import REASONS
from training.job import JobConfig, run_job

KEY = {"X-API-Key": "write-key"}
HOUR = 3_600_000  # ms
LISTS = [
    ("/recommend", {"n": 10}),
    ("/bestsellers", {"n": 10}),
    ("/new-arrivals", {"n": 10}),
]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    shop = generate_shop(n_users=200, n_items=100, n_categories=5, days=120, seed=11)
    shop.paths = shop.write(tmp_path_factory.mktemp("shop"))
    return shop


@pytest.fixture()
def api(redis_handle, shop, request):
    # A pointer TTL far longer than any test: what these tests see, the writing worker does at once, not on expiry.
    settings = isolated_settings(redis_handle, f"merch-{request.node.name}", api_key="write-key", pointer_ttl_ms=HOUR)
    events, items = shop.paths
    cfg = JobConfig(
        events=events,
        items=items,
        settings=settings.replace(model={"lists": ListParams(list_size=50)}),
        show_progress=False,
    )
    run_job(cfg, redis_handle.client)
    with TestClient(create_app(settings)) as client:
        client.settings = settings
        client.shop = shop
        yield client


def a_customer(api) -> str:
    for user in api.shop.events.filter(pc.equal(api.shop.events["event_type"], "purchase"))["user_id"].to_pylist():
        if api.get(f"/next-purchase/{user}").status_code == 200:
            return user
    raise AssertionError("no customer with purchases")


def every_list(api, user: str, item: str) -> dict[str, list[dict]]:
    out = {path: api.get(path, params={**params, "user_id": user}).json()["items"] for path, params in LISTS}
    out["/similar"] = api.get(f"/similar/{item}").json()["items"]
    out["/next-purchase"] = api.get(f"/next-purchase/{user}").json()["items"]
    batch = api.post("/next-purchase/batch", json={"user_ids": [user]}).json()
    out["/next-purchase/batch"] = batch["results"][user]
    return out


def test_every_item_of_every_list_has_a_known_reason(api):
    user = a_customer(api)
    item = api.get("/bestsellers").json()["items"][0]["item_id"]
    for path, items in every_list(api, user, item).items():
        assert items, path
        assert all(i["reason"] in REASONS for i in items), path


def test_an_unavailable_item_leaves_every_list_on_the_next_request(api):
    user = a_customer(api)
    lists = every_list(api, user, api.get("/bestsellers").json()["items"][1]["item_id"])
    shown = {i["item_id"] for items in lists.values() for i in items}
    gone = sorted(shown)[:15]
    assert api.post("/items", json=[{"item_id": i, "available": False} for i in gone], headers=KEY).status_code == 200
    after = every_list(api, user, api.get("/bestsellers").json()["items"][1]["item_id"])
    for path, items in after.items():
        assert not {i["item_id"] for i in items} & set(gone), path
        if path != "/new-arrivals":  # the demo's new arrivals are few: nothing to refill them from
            assert len(items) == len(lists[path]), path  # refilled from further down the list
    assert api.get(f"/similar/{gone[0]}").status_code == 404
    api.post("/items", json=[{"item_id": gone[0], "available": True}], headers=KEY)
    assert api.get(f"/similar/{gone[0]}").status_code in (200, 404)  # back, if the model knows it


def test_items_need_the_write_key_and_valid_fields(api):
    assert api.post("/items", json=[{"item_id": "x", "available": False}]).status_code == 401
    bad = api.post("/items", json=[{"item_id": "x", "price": -1}], headers=KEY)
    assert bad.status_code == 422 and "price" in bad.json()["message"]


def test_a_new_item_joins_new_arrivals_and_gets_similar_items_from_its_category(api):
    category = api.get("/categories").json()[0]
    now = datetime.now(timezone.utc).isoformat()
    body = [{"item_id": "brand-new", "title": "Brand new", "category": category, "price": 3.5, "created_at": now}]
    assert api.post("/items", json=body, headers=KEY).json()["accepted"] == 1
    fresh = api.get("/new-arrivals").json()["items"]
    assert fresh[0]["item_id"] == "brand-new" and fresh[0]["title"] == "Brand new" and fresh[0]["price"] == 3.5
    sims = api.get("/similar/brand-new").json()["items"]
    assert sims and all(i["category"] == category and i["reason"] == "same_category" for i in sims)


def test_the_job_reads_live_catalogue_updates(api, redis_handle, shop):
    best = api.get("/bestsellers", params={"n": 3}).json()["items"]
    api.post("/items", json=[{"item_id": best[0]["item_id"], "available": False}], headers=KEY)
    events, items = shop.paths
    cfg = JobConfig(events=events, items=items, settings=api.settings, show_progress=False)
    run_job(cfg, redis_handle.client)
    keys = Keys(api.settings.redis.key_prefix)
    assert merch.item_updates(redis_handle.client, keys)[best[0]["item_id"]]["available"] is False
    assert best[0]["item_id"] not in {i["item_id"] for i in api.get("/bestsellers", params={"n": 50}).json()["items"]}


def test_pin_boost_bury_exclude_rules(api):
    user = a_customer(api)
    best = [i["item_id"] for i in api.get("/bestsellers", params={"n": 20}).json()["items"]]
    other = next(i["item_id"] for i in api.get("/new-arrivals", params={"n": 50}).json()["items"] if i not in best)
    rule = {"kind": "pin", "item_id": other, "position": 2, "lists": ["recommend", "bestsellers"]}
    assert api.put("/rules/pin-it", json=rule, headers=KEY).status_code == 200
    for path in ("/recommend", "/bestsellers"):
        items = api.get(path, params={"user_id": user}).json()["items"]
        assert items[1]["item_id"] == other and items[1]["reason"] == "pinned", path
    api.put("/rules/up", json={"kind": "boost", "item_ids": [best[9]], "factor": 10}, headers=KEY)
    api.put("/rules/down", json={"kind": "bury", "item_ids": [best[0]], "factor": 0.1}, headers=KEY)
    api.put("/rules/deny", json={"kind": "exclude", "item_ids": [best[1]]}, headers=KEY)
    ranked = api.get("/bestsellers", params={"n": 20}).json()["items"]
    order = [i["item_id"] for i in ranked]
    assert order.index(best[9]) < 3 and ranked[order.index(best[9])]["reason"] == "boosted"
    assert order.index(best[0]) > 5 and best[1] not in order
    names = [r["name"] for r in api.get("/rules").json()]
    assert names == ["deny", "down", "pin-it", "up"]
    assert api.delete("/rules/deny", headers=KEY).status_code == 200
    assert api.delete("/rules/deny", headers=KEY).status_code == 404
    assert best[1] in [i["item_id"] for i in api.get("/bestsellers", params={"n": 20}).json()["items"]]


def test_rules_need_the_write_key_and_a_valid_body(api):
    assert api.put("/rules/x", json={"kind": "exclude", "item_ids": ["a"]}).status_code == 401
    r = api.put("/rules/x", json={"kind": "pin", "item_id": "a"}, headers=KEY)
    assert r.status_code == 422 and "position" in r.json()["message"]
    r = api.put("/rules/x", json={"kind": "boost", "category": "tea", "factor": 1.5, "lists": ["nope"]}, headers=KEY)
    assert r.status_code == 422


def test_a_rule_outside_its_time_window_does_nothing(api):
    best = [i["item_id"] for i in api.get("/bestsellers").json()["items"]]
    starts = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    api.put("/rules/later", json={"kind": "exclude", "item_ids": [best[0]], "starts": starts}, headers=KEY)
    assert api.get("/bestsellers").json()["items"][0]["item_id"] == best[0]


def test_diversity_caps_each_category(api):
    user = a_customer(api)
    items = api.get("/recommend", params={"user_id": user, "n": 10, "diversity": 1}).json()["items"]
    categories = [i["category"] for i in items]
    assert len(categories) == len(set(categories)) and items
    assert api.get("/recommend", params={"user_id": user, "diversity": 0}).status_code == 422


def test_another_worker_hears_of_a_change_before_its_pointer_expires(api):
    """Two API workers on one Redis, both trusting their pointer for an hour: a rule and an unavailable item written
    through one reach the other through the announcement."""
    with TestClient(create_app(api.settings)) as other:
        best = [i["item_id"] for i in other.get("/bestsellers").json()["items"]]
        assert api.put("/rules/deny", json={"kind": "exclude", "item_ids": [best[0]]}, headers=KEY).status_code == 200
        assert api.post("/items", json=[{"item_id": best[1], "available": False}], headers=KEY).status_code == 200
        shown = {i["item_id"] for i in api.get("/bestsellers").json()["items"]}
        assert not shown & {best[0], best[1]}  # the writing worker: at once
        deadline = time.monotonic() + 30  # a bound for a loaded machine; the message takes milliseconds
        while {best[0], best[1]} & {i["item_id"] for i in other.get("/bestsellers").json()["items"]}:
            assert time.monotonic() < deadline, "the other worker never heard of the change"
            time.sleep(0.02)
        assert api.delete("/rules/deny", headers=KEY).status_code == 200
        while best[0] not in {i["item_id"] for i in other.get("/bestsellers").json()["items"]}:
            assert time.monotonic() < deadline, "the other worker never heard the rule was removed"
            time.sleep(0.02)


def test_the_writing_worker_needs_no_announcement(api):
    """With its announcements stopped (a lost message), the worker that took a write still shows it on its very next
    request: it reloads before answering the write."""
    api.portal.call(api.app.state.services.reader.notifications.stop)
    best = [i["item_id"] for i in api.get("/bestsellers").json()["items"]]
    assert api.post("/items", json=[{"item_id": best[0], "available": False}], headers=KEY).status_code == 200
    assert best[0] not in {i["item_id"] for i in api.get("/bestsellers").json()["items"]}
    assert api.put("/rules/deny", json={"kind": "exclude", "item_ids": [best[1]]}, headers=KEY).status_code == 200
    assert best[1] not in {i["item_id"] for i in api.get("/bestsellers").json()["items"]}
    assert api.delete("/rules/deny", headers=KEY).status_code == 200
    assert best[1] in {i["item_id"] for i in api.get("/bestsellers").json()["items"]}


def test_category_rules_follow_live_category_changes(api):
    """Items' effects under the rules are kept per worker: a catalogue update that moves an item into an excluded
    or boosted category counts from the next request, and so does a rule that stops applying."""
    ranked = api.get("/bestsellers", params={"n": 30}).json()["items"]
    first, low = ranked[0], ranked[-1]
    other = next(i["category"] for i in ranked if i["category"] not in (first["category"], low["category"]))
    assert api.put("/rules/no-cat", json={"kind": "exclude", "category": other}, headers=KEY).status_code == 200
    shown = api.get("/bestsellers", params={"n": 30}).json()["items"]
    assert shown[0]["item_id"] == first["item_id"] and all(i["category"] != other for i in shown)
    api.post("/items", json=[{"item_id": first["item_id"], "category": other}], headers=KEY)
    assert first["item_id"] not in [i["item_id"] for i in api.get("/bestsellers", params={"n": 30}).json()["items"]]
    api.put("/rules/up", json={"kind": "boost", "category": low["category"], "factor": 100}, headers=KEY)
    shown = api.get("/bestsellers", params={"n": 30}).json()["items"]
    assert shown[0]["category"] == low["category"] and shown[0]["reason"] == "boosted"
    api.delete("/rules/no-cat", headers=KEY)
    assert first["item_id"] in [i["item_id"] for i in api.get("/bestsellers", params={"n": 30}).json()["items"]]
