"""No 500 from stored values: RFM and KPI figures stay finite whatever the events hold, the segment endpoint takes a
value that is not a number, and an unexpected error is still answered in JSON, counted in /metrics and logged."""

from __future__ import annotations

import logging
import math

import orjson
import pyarrow.compute as pc
import pytest
from factories import ev, events, isolated_settings
from fastapi.testclient import TestClient

from api.app import create_app
from cache.keys import Keys
from cache.publisher import current_version
from recommender.config import AlsParams, ListParams
from recommender.data.demo import generate_shop
from recommender.marketing import kpis, rfm
from training.job import JobConfig, run_job


def huge_events():
    """Purchases as a table that skipped validation: a price of 1e308, an infinite quantity, a NaN price."""
    rows = [ev(f"u{k}", f"i{k % 4}", "purchase", k % 20, price=2.5, order_id=f"o{k}") for k in range(40)]
    rows += [
        ev("u0", "i1", "purchase", 1, price=1e308, quantity=10.0, order_id="huge"),
        ev("u1", "i2", "purchase", 1, price=2.0, quantity=math.inf, order_id="inf"),
        ev("u2", "i2", "purchase", 1, price=math.nan, order_id="nan"),
    ]
    return events(rows)


def test_rfm_figures_stay_finite_and_out_of_bound_values_count_as_missing():
    scores = {r["user_id"]: r for r in rfm.compute_rfm(huge_events()).to_pylist()}
    assert scores["u0"]["monetary"] == 2.5 + 10 * 2.5  # the 1e308 price is missing: the item's average price
    assert scores["u1"]["monetary"] == 2.5  # the line with an infinite quantity is left out
    assert scores["u2"]["monetary"] == 2.5 + 2.5
    assert all(math.isfinite(r["monetary"]) and 1 <= r["m_score"] <= 5 for r in scores.values())
    summary = rfm.segment_summary(rfm.compute_rfm(huge_events())).to_pylist()
    assert all(math.isfinite(s["monetary"]) for s in summary)


@pytest.mark.parametrize("period", list(kpis.PERIODS))
def test_kpi_figures_stay_finite(period):
    rows = kpis.compute_kpis(huge_events(), period).to_pylist()
    assert rows
    assert all(math.isfinite(v) for row in rows for v in row.values() if isinstance(v, float))


@pytest.fixture(scope="module")
def published(redis_handle, tmp_path_factory):
    shop = generate_shop(n_users=120, n_items=40, n_categories=3, days=60, seed=3)
    events_path, items_path = shop.write(tmp_path_factory.mktemp("stored"))
    settings = isolated_settings(redis_handle, "sv")
    cfg = JobConfig(
        events=events_path,
        items=items_path,
        settings=settings.replace(model={"als": AlsParams(factors=8), "lists": ListParams(list_size=20)}),
        show_progress=False,
    )
    run_job(cfg, redis_handle.client)
    ev_table = shop.events
    buyers = sorted(set(ev_table.filter(pc.equal(ev_table["event_type"], "purchase"))["user_id"].to_pylist()))
    return settings, buyers


def overwrite(client, settings, suffix: str, value: bytes) -> None:
    keys = Keys(settings.redis.key_prefix)
    client.set(keys.version_prefix(current_version(client, keys)[0]) + suffix, value)


def test_segment_with_a_stored_monetary_that_is_not_a_number_answers(redis_handle, published):
    settings, buyers = published
    stored = orjson.loads(
        redis_handle.client.get(
            Keys(settings.redis.key_prefix).version_prefix(
                current_version(redis_handle.client, Keys(settings.redis.key_prefix))[0]
            )
            + Keys.segment(buyers[0])
        )
    )
    # what a version published from a 1e308 price held: orjson writes infinity as null
    overwrite(redis_handle.client, settings, Keys.segment(buyers[0]), orjson.dumps({**stored, "monetary": math.inf}))
    with TestClient(create_app(settings)) as client:
        r = client.get(f"/customers/{buyers[0]}/segment")
        assert r.status_code == 200 and r.json()["monetary"] is None
        assert client.get("/segments").status_code == 200 and client.get("/kpis").status_code == 200


def test_an_unexpected_error_is_json_counted_and_logged(redis_handle, published, caplog):
    settings, buyers = published
    overwrite(redis_handle.client, settings, Keys.segment(buyers[1]), b"{not json")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        with caplog.at_level(logging.INFO, logger="reco.api"):
            r = client.get(f"/customers/{buyers[1]}/segment")
        assert r.status_code == 500 and r.json() == {"detail": "Internal error; it has been logged."}
        metrics = client.get("/metrics").text
    assert 'reco_requests_total{method="GET",route="/customers/{user_id}/segment",status="500"} 1.0' in metrics
    logged = [rec for rec in caplog.records if rec.getMessage() == "request" and getattr(rec, "status", None) == 500]
    assert logged and logged[0].route == "/customers/{user_id}/segment"
