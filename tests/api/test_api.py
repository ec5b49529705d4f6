"""Every endpoint and its errors, against a version published by the real job into a real Redis."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest
from factories import isolated_settings
from fastapi.testclient import TestClient

from api.app import create_app
from recommender.config import ListParams
from recommender.data.demo import generate_shop
from training.job import JobConfig, run_job


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    shop = generate_shop(n_users=300, n_items=120, n_categories=6, days=120, seed=7)
    shop.paths = shop.write(tmp_path_factory.mktemp("shop"))
    return shop


@pytest.fixture(scope="module")
def published(redis_handle, shop):
    settings = isolated_settings(redis_handle, "api")
    events, items = shop.paths
    result = run_job(
        JobConfig(
            events=events,
            items=items,
            settings=settings.replace(model={"lists": ListParams(list_size=50)}),
            show_progress=False,
        ),
        redis_handle.client,
    )
    return settings, result


@pytest.fixture(scope="module")
def client(published):
    with TestClient(create_app(published[0])) as c:
        yield c


def purchases(shop, user_id):
    ev = shop.events
    mask = pc.and_(pc.equal(ev["user_id"], user_id), pc.equal(ev["event_type"], "purchase"))
    return set(ev.filter(mask)["item_id"].to_pylist())


def buyers(shop):
    ev = shop.events
    return sorted(set(ev.filter(pc.equal(ev["event_type"], "purchase"))["user_id"].to_pylist()))


def categories_of(shop):
    return dict(zip(shop.items["item_id"].to_pylist(), shop.items["category"].to_pylist()))


def test_health_and_ready(client, published):
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["version"] == published[1].version


def test_ready_is_false_when_nothing_published(redis_handle):
    settings = isolated_settings(redis_handle, "empty")
    with TestClient(create_app(settings)) as c:
        assert c.get("/readyz").status_code == 503
        r = c.get("/recommend", params={"user_id": "u1"})
        assert r.status_code == 503 and "reco train" in r.json()["detail"]


def test_recommend_known_user_is_personal_without_purchases(client, shop, published):
    user = buyers(shop)[0]
    r = client.get("/recommend", params={"user_id": user, "n": 7}).json()
    assert r["source"] == "personal" and r["version"] == published[1].version
    ids = [i["item_id"] for i in r["items"]]
    assert len(ids) == 7 == len(set(ids))
    assert not set(ids) & purchases(shop, user)
    scores = [i["score"] for i in r["items"]]
    assert scores == sorted(scores, reverse=True)
    assert all(i["title"] and i["category"] for i in r["items"])


def test_recommend_cold_user_gets_bestsellers(client):
    r = client.get("/recommend", params={"user_id": "never-seen", "n": 5}).json()
    best = client.get("/bestsellers", params={"n": 5}).json()
    assert r["source"] == "bestsellers" and r["items"] == best["items"]


def test_recommend_category_and_exclude(client, shop):
    user = buyers(shop)[1]
    cats = categories_of(shop)
    category = client.get("/categories").json()[0]
    r = client.get("/recommend", params={"user_id": user, "n": 5, "category": category}).json()
    assert r["items"] and all(cats[i["item_id"]] == category for i in r["items"])
    first = client.get("/recommend", params={"user_id": user, "n": 3}).json()["items"]
    skip = [first[0]["item_id"], first[1]["item_id"]]
    r = client.get("/recommend", params={"user_id": user, "n": 3, "exclude": ",".join(skip)}).json()
    assert not {i["item_id"] for i in r["items"]} & set(skip)
    assert r["items"][0]["item_id"] == first[2]["item_id"]


def test_recommend_tops_up_short_personal_list_with_bestsellers(client, shop):
    user = buyers(shop)[2]
    r = client.get("/recommend", params={"user_id": user, "n": 100}).json()
    assert r["source"] == "personal+bestsellers"  # the stored list has 50 items
    assert len(r["items"]) > 50


def test_recommend_says_bestsellers_when_no_personal_pick_is_left(client, shop):
    user = buyers(shop)[3]
    personal = [i["item_id"] for i in client.get("/recommend", params={"user_id": user, "n": 100}).json()["items"][:50]]
    r = client.get("/recommend", params={"user_id": user, "n": 5, "exclude": ",".join(personal)}).json()
    assert r["source"] == "bestsellers" and r["items"] and not {i["item_id"] for i in r["items"]} & set(personal)


def test_bestsellers_overall_and_per_category(client, shop):
    cats = categories_of(shop)
    r = client.get("/bestsellers", params={"n": 4}).json()
    assert r["source"] == "bestsellers" and len(r["items"]) == 4
    for category in client.get("/categories").json():
        items = client.get("/bestsellers", params={"category": category, "n": 3}).json()["items"]
        assert items and all(cats[i["item_id"]] == category for i in items)
    assert client.get("/bestsellers", params={"category": "no such category"}).status_code == 404


def test_new_arrivals(client, shop, published):
    r = client.get("/new-arrivals", params={"n": 5}).json()
    assert r["source"] == "new_arrivals" and r["items"]
    created = dict(zip(shop.items["item_id"].to_pylist(), shop.items["created_at"].to_pylist()))
    as_of = published[1].as_of
    assert all((as_of - created[i["item_id"]]).days <= 30 for i in r["items"])
    personal = client.get("/new-arrivals", params={"n": 5, "user_id": buyers(shop)[0]}).json()
    assert personal["source"] == "new_arrivals+personal"
    assert {i["item_id"] for i in personal["items"]} <= {
        i["item_id"] for i in client.get("/new-arrivals", params={"n": 100}).json()["items"]
    }


def test_similar(client, shop):
    item = shop.items["item_id"][0].as_py()
    r = client.get(f"/similar/{item}", params={"n": 6}).json()
    assert r["source"] == "similar" and len(r["items"]) == 6
    assert item not in {i["item_id"] for i in r["items"]}
    missing = client.get("/similar/NO-SUCH-ITEM")
    assert missing.status_code == 404 and "NO-SUCH-ITEM" in missing.json()["detail"]


def test_next_purchase_single_and_errors(client, shop):
    user = buyers(shop)[0]
    r = client.get(f"/next-purchase/{user}", params={"n": 5}).json()
    assert r["source"] == "next_purchase" and r["user_id"] == user and len(r["items"]) == 5
    for item in r["items"]:
        assert item["reason"] in {"due_again", "goes_with_your_purchases"}
        assert (item["due"] is not None) == (item["reason"] == "due_again")
        if item["reason"] == "goes_with_your_purchases":
            assert item["item_id"] not in purchases(shop, user)
    assert client.get("/next-purchase/never-bought").status_code == 404


def test_next_purchase_batch(client, shop):
    known = buyers(shop)
    ids = (known * 4)[:998] + ["nobody-1", "nobody-2"]
    r = client.post("/next-purchase/batch", json={"user_ids": ids, "n": 3})
    assert r.status_code == 200
    body = r.json()
    assert body["unknown"] == ["nobody-1", "nobody-2"]
    assert set(body["results"]) == set(known)
    assert all(1 <= len(v) <= 3 for v in body["results"].values())
    single = client.get(f"/next-purchase/{known[0]}", params={"n": 3}).json()["items"]
    assert body["results"][known[0]] == single


@pytest.mark.parametrize(
    "method,url,kwargs,field",
    [
        ("get", "/recommend", {"params": {"user_id": "u1", "n": 0}}, "n"),
        ("get", "/recommend", {"params": {"user_id": "u1", "n": 101}}, "n"),
        ("get", "/recommend", {"params": {"user_id": "u1", "n": "ten"}}, "n"),
        ("get", "/recommend", {"params": {}}, "user_id"),
        ("get", "/recommend", {"params": {"user_id": "bad id"}}, "user_id"),
        ("get", "/recommend", {"params": {"user_id": "x" * 129}}, "user_id"),
        ("get", "/bestsellers", {"params": {"n": -1}}, "n"),
        ("get", "/similar/" + "x" * 129, {}, "item_id"),
        ("get", "/next-purchase/u1", {"params": {"n": 500}}, "n"),
        ("post", "/next-purchase/batch", {"json": {"user_ids": []}}, "user_ids"),
        ("post", "/next-purchase/batch", {"json": {"user_ids": ["u"] * 1001}}, "user_ids"),
        ("post", "/next-purchase/batch", {"json": {"user_ids": ["ok", "not ok"]}}, "user_ids"),
        ("post", "/next-purchase/batch", {"json": {"user_ids": ["ok"], "n": 0}}, "n"),
    ],
)
def test_bad_parameters_get_422_naming_the_field(client, method, url, kwargs, field):
    r = getattr(client, method)(url, **kwargs)
    assert r.status_code == 422
    body = r.json()
    assert field in body["message"]
    assert any(field in [str(part) for part in error["loc"]] for error in body["detail"])


def test_openapi_documents_every_endpoint(client):
    spec = client.get("/openapi.json").json()
    for path in [
        "/recommend",
        "/bestsellers",
        "/new-arrivals",
        "/similar/{item_id}",
        "/next-purchase/{user_id}",
        "/next-purchase/batch",
        "/healthz",
        "/readyz",
    ]:
        assert path in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_customer_segment_for_every_buyer(client, shop):
    from recommender.marketing.rfm import SEGMENTS

    seen = set()
    for user in buyers(shop):
        r = client.get(f"/customers/{user}/segment")
        assert r.status_code == 200, user
        body = r.json()
        assert body["segment"] in SEGMENTS and body["action"] == SEGMENTS[body["segment"]].action
        assert all(1 <= body[k] <= 5 for k in ("r_score", "f_score", "m_score"))
        seen.add(body["segment"])
    assert len(seen) >= 4
    assert client.get("/customers/never-bought/segment").status_code == 404
    summary = client.get("/segments").json()["segments"]
    assert sum(s["customers"] for s in summary) == len(buyers(shop))


def test_kpis_per_period(client):
    from recommender.marketing.kpis import PERIODS

    month = client.get("/kpis").json()
    assert month["period"] == "month" and len(month["rows"]) >= 4
    assert all(0 <= row["repeat_purchase_rate"] <= 1 for row in month["rows"])
    for period in PERIODS:
        assert client.get("/kpis", params={"period": period}).json()["rows"]
    bad = client.get("/kpis", params={"period": "fortnight"})
    assert bad.status_code == 422 and "period" in bad.json()["message"]


def test_next_purchase_segment_strategy(client, shop):
    from recommender.marketing.rfm import SEGMENTS

    ids = buyers(shop)
    default = client.post("/next-purchase/batch", json={"user_ids": ids, "n": 5}).json()
    by_segment = client.post("/next-purchase/batch", json={"user_ids": ids, "n": 5, "strategy": "segment"}).json()
    assert default["strategies"] is None and set(by_segment["strategies"]) == set(ids)
    new = [i["item_id"] for i in client.get("/new-arrivals", params={"n": 5}).json()["items"]]
    for user in ids:
        segment = client.get(f"/customers/{user}/segment").json()["segment"]
        applied = by_segment["strategies"][user]
        assert applied in (SEGMENTS[segment].strategy, "due_again")
        picks = by_segment["results"][user]
        if applied == "new_arrivals":
            assert [p["item_id"] for p in picks] == new and {p["reason"] for p in picks} == {"new_arrival"}
        if applied == "due_again":
            assert picks == default["results"][user]
    single = client.get(f"/next-purchase/{ids[0]}", params={"n": 5, "strategy": "segment"}).json()
    assert single["strategy"] == by_segment["strategies"][ids[0]] and single["segment"]
    assert single["items"] == by_segment["results"][ids[0]]


def test_no_bought_item_in_personal_picks_with_repeat_share_zero(redis_handle, shop):
    settings = isolated_settings(redis_handle, "rs0")
    events, items = shop.paths
    lists_cfg = ListParams(list_size=30, personal_repeat_share=0.0)
    run_job(
        JobConfig(
            events=events, items=items, settings=settings.replace(model={"lists": lists_cfg}), show_progress=False
        ),
        redis_handle.client,
    )
    with TestClient(create_app(settings)) as c:
        for user in buyers(shop)[:60]:
            picks = {i["item_id"] for i in c.get("/recommend", params={"user_id": user, "n": 30}).json()["items"]}
            assert not picks & purchases(shop, user), user
