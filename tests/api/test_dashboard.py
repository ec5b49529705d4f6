"""The dashboard's JSON endpoints, its pages' plain routes, the self-hosted API documentation, and what the job stores
for them, against versions published by the real job into a real Redis."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest
from factories import NOW, isolated_settings
from fastapi.testclient import TestClient

from api.app import create_app
from api.dashboard.request_stats import quantile
from cache.keys import Keys
from cache.status import record_evaluation
from recommender.config import ListParams
from recommender.data.demo import generate_shop
from training.job import JobConfig, quality_entry, run_job

READ, WRITE = "read-secret", "write-secret"


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    shop = generate_shop(n_users=250, n_items=100, n_categories=5, days=120, seed=11)
    shop.paths = shop.write(tmp_path_factory.mktemp("shop"))
    return shop


@pytest.fixture(scope="module")
def published(redis_handle, shop):
    """Two runs of the job (so there is a previous version), with the gate on."""
    settings = isolated_settings(redis_handle, "dash", api_key=WRITE, read_api_key=READ)
    events_path, items_path = shop.paths
    cfg = JobConfig(
        events=events_path,
        items=items_path,
        settings=settings.replace(model={"lists": ListParams(list_size=30)}),
        show_progress=False,
    )
    cfg.gate = True
    first = run_job(cfg, redis_handle.client)
    second = run_job(cfg, redis_handle.client)
    return settings, first, second


@pytest.fixture(scope="module")
def client(published):
    with TestClient(create_app(published[0]), headers={"X-API-Key": READ}) as c:
        yield c


def test_overview_shows_both_versions_with_stage_times_gate_and_load_reports(client, published):
    _, first, second = published
    body = client.get("/dashboard/api/overview").json()
    assert body["current"]["version"] == second.version and body["previous"]["version"] == first.version
    cur = body["current"]
    assert cur["counts"]["users"] == second.counts["users"]
    assert set(cur["seconds"]) >= {"load", "gate", "fit", "personal+next", "activity"}
    assert cur["load"][0]["rows_kept"] == second.reports[0].rows_kept
    assert cur["evaluation"]["candidate"] == pytest.approx(second.gate["candidate"])
    assert "figures" not in cur["evaluation"] and isinstance(cur["hidden_items"], int)
    assert body["redis"]["durability"] in ("fsync-always", "fsync-everysec", "snapshots-only", "unknown")
    assert body["redis"]["used_memory"] > 0


def test_live_ingestion_and_request_figures_count_what_happened(client, shop):
    user = shop.events["user_id"][0].as_py()
    item = shop.items["item_id"][0].as_py()
    before = client.get("/dashboard/api/overview").json()["live"]["in_window"]
    sent = client.post(
        "/events",
        json={"events": [{"user_id": user, "item_id": item, "event_type": "view"}] * 3},
        headers={"X-API-Key": WRITE},
    )
    assert sent.status_code == 200
    for _ in range(5):
        assert client.get("/recommend", params={"user_id": user}).status_code == 200
    body = client.get("/dashboard/api/overview").json()
    assert body["live"]["in_window"] == before + 3 and sum(body["live"]["per_minute"]) == before + 3
    routes = {r["route"]: r for r in body["requests"]["routes"]}
    assert routes["/recommend"]["requests"] >= 5
    assert 0 < routes["/recommend"]["p50_ms"] <= routes["/recommend"]["p99_ms"]
    assert not any(r.startswith("/dashboard") for r in routes)


def test_customer_shows_segment_and_the_latest_events_the_job_saw(client, shop):
    ev_ = shop.events
    bought = ev_.filter(pc.equal(ev_["event_type"], "purchase"))
    user = bought["user_id"][0].as_py()
    mine = bought.filter(pc.equal(bought["user_id"], user)).sort_by([("timestamp", "descending")])
    body = client.get(f"/dashboard/api/customers/{user}").json()
    assert body["has_purchases"] and body["segment"]["label"] and body["segment"]["action"]
    purchases = [e for e in body["events"] if e["event_type"] == "purchase"]
    assert purchases[0]["item_id"] == mine["item_id"][0].as_py()
    assert purchases[0]["timestamp"] == mine["timestamp"][0].as_py().isoformat(timespec="seconds")
    assert all(e["title"] for e in purchases)
    assert client.get("/dashboard/api/customers/nobody-at-all").json()["has_purchases"] is False


def test_item_shows_buyers_and_repeat_buyers(client, shop):
    ev_ = shop.events
    bought = ev_.filter(pc.equal(ev_["event_type"], "purchase"))
    item = bought["item_id"][0].as_py()
    buyers = set(bought.filter(pc.equal(bought["item_id"], item))["user_id"].to_pylist())
    body = client.get(f"/dashboard/api/items/{item}").json()
    assert body["stats"]["buyers"] == len(buyers) and body["title"] and body["available"]
    assert sum(body["stats"]["buy_counts"].values()) == len(buyers)
    assert client.get("/dashboard/api/items/no-such-item").status_code == 404


def test_search_finds_a_customer_by_id_and_items_by_title_words(client, shop):
    user = shop.events["user_id"][0].as_py()
    assert client.get("/dashboard/api/search", params={"q": user}).json()["customers"] == [user]
    title = shop.items["title"][3].as_py()
    found = client.get("/dashboard/api/search", params={"q": " ".join(title.split()[:2]).upper()}).json()
    assert shop.items["item_id"][3].as_py() in [i["item_id"] for i in found["items"]]
    assert client.get("/dashboard/api/search", params={"q": "zz-nothing"}).json() == {
        "version": found["version"],
        "customers": [],
        "items": [],
    }


def test_quality_has_the_gate_figures_of_the_serving_version_and_the_log_of_runs(client, published, redis_handle):
    settings, first, second = published
    body = client.get("/dashboard/api/quality").json()
    assert body["version"] == second.version
    warm = body["gate"]["figures"]["warm"]
    assert warm["production"]["ndcg@10"] == pytest.approx(second.gate["candidate"])
    assert "recent_popularity" in warm
    assert [e["version"] for e in body["log"][:2]] == [second.version, first.version]
    assert body["offline"] is None
    record_evaluation(redis_handle.client, Keys(settings.redis.key_prefix), {"figures": {"purchase": {}}, "meta": {}})
    assert client.get("/dashboard/api/quality").json()["offline"] == {"figures": {"purchase": {}}, "meta": {}}


def test_a_refused_run_is_logged_as_not_published():
    entry = quality_entry(None, NOW, {"publish": False, "reason": "worse", "candidate": 0.1, "baseline": 0.2})
    assert entry["published"] is False and entry["decision"] == "worse" and entry["recent_popularity"] == 0.2


def test_pages_and_docs_are_open_but_the_data_needs_the_read_key(published):
    with TestClient(create_app(published[0])) as anon:
        for path in ("/dashboard", "/dashboard/quality", "/dashboard/customers/u1", "/dashboard/items/x:1", "/docs"):
            page = anon.get(path)
            assert page.status_code == 200 and "text/html" in page.headers["content-type"], path
        assert anon.get("/dashboard/api/overview").status_code == 401
        assert anon.get("/dashboard/nothing-here").status_code == 404
        assert anon.get("/dashboard/static/../../app.py").status_code == 404
        metrics = anon.get("/metrics").text
        assert 'route="/dashboard/customers/{user_id}"' in metrics and 'route="unmatched"' in metrics


def test_docs_and_redoc_load_every_asset_from_the_service(client):
    docs, redoc = client.get("/docs").text, client.get("/redoc").text
    for html in (docs, redoc):
        assert "cdn.jsdelivr" not in html and "fonts.googleapis" not in html and "tiangolo.com" not in html
    assert "/docs/assets/swagger-ui-bundle.js" in docs and "/docs/assets/swagger-ui.css" in docs
    assert "/docs/assets/redoc.standalone.js" in redoc
    js = client.get("/docs/assets/redoc.standalone.js")
    assert js.status_code == 200 and b"cdn.redoc.ly" not in js.content and len(js.content) > 500_000
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
    assert client.get("/docs/assets/nope.js").status_code == 404


def test_quantile_interpolates_inside_buckets_like_prometheus():
    buckets = [(0.001, 0.0), (0.002, 50.0), (0.005, 100.0), (float("inf"), 100.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.002)
    assert quantile(0.25, buckets) == pytest.approx(0.0015)
    assert quantile(0.99, buckets) == pytest.approx(0.002 + 0.003 * 49 / 50)
    assert quantile(0.5, [(0.001, 0.0), (float("inf"), 0.0)]) is None
    assert quantile(0.99, [(0.001, 1.0), (float("inf"), 10.0)]) == 0.001  # beyond the last bound


def test_reco_evaluate_publish_records_every_baseline_for_the_quality_page(
    published, shop, redis_handle, monkeypatch, tmp_path
):
    from typer.testing import CliRunner

    from training.cli import app

    settings = isolated_settings(redis_handle, "evalpub")
    monkeypatch.setenv("RECO_KEY_PREFIX", settings.redis.key_prefix)
    monkeypatch.setenv("RECO_DATA_DIR", str(settings.redis.data_dir))
    if redis_handle.url:
        monkeypatch.setenv("REDIS_URL", redis_handle.url)
    events_path, items_path = shop.paths
    args = ["evaluate", "--events", str(events_path), "--items", str(items_path), "--no-progress", "--no-next-basket"]
    args += ["--target", "purchase", "--model", "production", "--model", "global_popularity", "--publish"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "recorded the figures for the dashboard" in done.output
    with TestClient(create_app(settings)) as c:
        offline = c.get("/dashboard/api/quality").json()["offline"]
    warm = offline["figures"]["purchase"]["warm"]
    assert set(warm) == {"production", "global_popularity"} and warm["production"]["users"] > 0
    assert offline["serving_version"] is None and offline["meta"]["source"]["events"] == events_path.name
    served = offline["meta"]["served"]["purchase"]
    assert served["model"] == "production" and set(served["against"]) == {"global_popularity"}


def test_before_the_first_run_the_overview_says_so_and_data_pages_answer_503(redis_handle):
    with TestClient(create_app(isolated_settings(redis_handle, "dashempty"))) as c:
        body = c.get("/dashboard/api/overview").json()
        assert body["current"] is None and body["previous"] is None and body["live"]["stream_length"] == 0
        assert c.get("/dashboard/api/quality").json() == {"version": None, "gate": None, "log": [], "offline": None}
        for path in ("/dashboard/api/customers/u1", "/dashboard/api/items/i1", "/dashboard/api/search?q=u1"):
            answer = c.get(path)
            assert answer.status_code == 503 and "reco train" in answer.json()["detail"], path
