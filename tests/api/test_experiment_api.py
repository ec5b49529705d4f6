"""The experiment through the API and the job: rec_id and variant on every list, the control group's baseline,
feedback events, the nightly report and the export."""

from __future__ import annotations

import csv

import pyarrow.compute as pc
import pytest
from factories import isolated_settings
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from recommender.config import ListParams
from recommender.data.demo import generate_shop
from recommender.serving.experiment import CONTROL, TREATMENT, parse_rec_id, variant_of
from training.cli import app as cli
from training.job import JobConfig, run_job

KEY = {"X-API-Key": "write-key"}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    shop = generate_shop(n_users=200, n_items=80, n_categories=4, days=90, seed=5)
    shop.paths = shop.write(tmp_path_factory.mktemp("shop"))
    return shop


@pytest.fixture(scope="module")
def api(redis_handle, shop, tmp_path_factory):
    settings = isolated_settings(
        redis_handle,
        "experiment",
        api_key="write-key",
        control_share=0.5,
        experiment_salt="test",
        live_archive_dir=tmp_path_factory.mktemp("live"),
    )
    events, items = shop.paths
    lists = settings.replace(model={"lists": ListParams(list_size=30)})
    cfg = JobConfig(events=events, items=items, settings=lists, show_progress=False)
    run_job(cfg, redis_handle.client)
    with TestClient(create_app(settings)) as client:
        client.settings, client.cfg = settings, cfg
        yield client


def buyers(shop) -> list[str]:
    ev = shop.events
    return sorted(set(ev.filter(pc.equal(ev["event_type"], "purchase"))["user_id"].to_pylist()))


def by_variant(shop, variant: str) -> str:
    return next(u for u in buyers(shop) if variant_of(u, "test", 0.5) == variant)


def test_every_list_answer_has_rec_id_and_variant(api, shop):
    user = by_variant(shop, TREATMENT)
    item = api.get("/bestsellers").json()["items"][0]["item_id"]
    answers = {
        "recommend": api.get("/recommend", params={"user_id": user}).json(),
        "bestsellers": api.get("/bestsellers").json(),
        "new_arrivals": api.get("/new-arrivals", params={"user_id": user}).json(),
        "similar": api.get(f"/similar/{item}").json(),
        "next_purchase": api.get(f"/next-purchase/{user}").json(),
    }
    for kind, answer in answers.items():
        parsed = parse_rec_id(answer["rec_id"])
        assert parsed is not None and parsed.kind == kind and parsed.version == answer["version"], kind
        assert answer["variant"] in (TREATMENT, CONTROL)
    batch = api.post("/next-purchase/batch", json={"user_ids": buyers(shop)[:20]}).json()
    assert set(batch["rec_ids"]) == set(batch["results"]) == set(batch["variants"])


def test_the_control_group_gets_bestsellers(api, shop):
    control, treated = by_variant(shop, CONTROL), by_variant(shop, TREATMENT)
    assert api.get(f"/experiment/assignment/{control}").json()["variant"] == CONTROL
    best = [i["item_id"] for i in api.get("/bestsellers", params={"n": 10}).json()["items"]]
    held = api.get("/recommend", params={"user_id": control}).json()
    assert held["variant"] == CONTROL and held["source"] == "bestsellers"
    assert [i["item_id"] for i in held["items"]] == best
    mail = api.get(f"/next-purchase/{control}").json()
    assert mail["variant"] == CONTROL and [i["item_id"] for i in mail["items"]] == best
    assert all(i["reason"] == "bestseller" for i in mail["items"])
    assert api.get("/recommend", params={"user_id": treated}).json()["source"].startswith("personal")
    info = api.get("/experiment").json()
    assert info["active"] and info["control_share"] == 0.5


def test_feedback_is_accepted_and_reported_by_the_next_run(api, shop, redis_handle):
    assert api.get("/experiment/report").status_code in (200, 404)
    user = by_variant(shop, TREATMENT)
    answer = api.get("/recommend", params={"user_id": user}).json()
    item = answer["items"][0]["item_id"]
    events = [
        {"user_id": user, "item_id": item, "event_type": "impression", "rec_id": answer["rec_id"], "position": 1},
        {"user_id": user, "item_id": item, "event_type": "click", "rec_id": answer["rec_id"], "position": 1},
        {"user_id": user, "item_id": item, "event_type": "purchase", "rec_id": answer["rec_id"], "price": 5},
    ]
    assert api.post("/events", json={"events": events}, headers=KEY).json()["accepted"] == 3
    bad = api.post("/events", json={"events": [{**events[0], "position": 0}]}, headers=KEY)
    assert bad.status_code == 422 and "position" in bad.json()["message"]
    run_job(api.cfg, redis_handle.client)
    report = api.get("/experiment/report").json()
    treated = report["variants"][TREATMENT]
    assert treated["impressions"] == 1 and treated["clicks"] == 1
    assert treated["by_list"]["recommend"]["clicks"] == 1 and treated["by_position"]["1"]["impressions"] == 1
    assert treated["attributed"]["clicked"]["purchases"] == 1
    # the demo shop's log ended months before these live events: only this customer is in the report's window, so
    # there is no control group to compare with yet (the lift itself is tested in tests/marketing)
    assert report["window"]["end"].startswith(report["as_of"][:10]) and treated["customers"] == 1
    assert report["variants"][CONTROL]["customers"] == 0 and report["lifts"] == []
    assert api.get("/experiment").json()["customers"][CONTROL] == report["variants"][CONTROL]["customers"]


def test_export_rows_carry_rec_id_and_variant(api, shop, tmp_path, monkeypatch):
    for name, value in {
        "RECO_KEY_PREFIX": api.settings.redis.key_prefix,
        "RECO_CONTROL_SHARE": "0.5",
        "RECO_EXPERIMENT_SALT": "test",
        "RECO_DATA_DIR": str(api.settings.redis.data_dir),
    }.items():
        monkeypatch.setenv(name, value)
    if api.settings.redis.url:
        monkeypatch.setenv("REDIS_URL", api.settings.redis.url)
    out = tmp_path / "np.csv"
    result = CliRunner().invoke(cli, ["export", "next-purchase", "--out", str(out), "--n", "3", "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert rows and all(r["variant"] == variant_of(r["user_id"], "test", 0.5) for r in rows)
    assert all(parse_rec_id(r["rec_id"]).variant == r["variant"] for r in rows)
    assert all(r["reason"] == "bestseller" for r in rows if r["variant"] == CONTROL)
