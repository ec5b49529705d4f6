"""Time is guarded: no row or live event later than the job's clock (plus a small skew) or before a floor is trained
on, the model's "as of" is never later than now, and a version poisoned before these rules existed cannot keep the
promotion gate refusing good runs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from factories import isolated_settings
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from cache.keys import Keys
from cache.live import ingest
from cache.publisher import Publisher, current_version, manifest
from recommender.config import AlsParams, ListParams, Settings
from recommender.data.clock import TimeWindow, utc_now
from recommender.data.dataset import load_dataset
from recommender.data.demo import generate_shop
from recommender.data.loading import BadRow
from recommender.data.schema import EVENT_SCHEMA
from training.cli import app
from training.job import JobConfig, run_job

HEADER = "user_id,item_id,event_type,timestamp"
NOW = datetime(2026, 7, 1, 12, 0, 0)
WINDOW = TimeWindow.ending_now(NOW, skew_seconds=300, earliest=datetime(1990, 1, 1))
LATE = "is later than now (2026-07-01 12:00:00 UTC, 5 min allowed clock skew)"
EARLY = "is before 1990-01-01 (the earliest plausible time)"


def write(path, lines, header=HEADER):
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def test_rows_after_now_plus_skew_or_before_the_floor_are_bad_rows(tmp_path):
    lines = [f"u{k},i{k % 3},view,2026-06-{1 + k:02d} 10:00:00" for k in range(20)]
    lines[2] = "u2,i1,purchase,2099-01-01 00:00:00"
    lines[5] = "u5,i1,view,2026-07-01 12:04:59"  # within the allowed skew: kept
    lines[7] = "u7,i1,view,2026-07-01 12:05:01"  # just beyond it
    lines[9] = "u9,i1,view,1970-01-01 00:00:00"  # an epoch 0 default
    lines[11] = "u11,i1,view,4102444800"  # epoch seconds of 2100-01-01
    ds = load_dataset(write(tmp_path / "events.csv", lines), max_bad_share=0.25, window=WINDOW)
    assert ds.reports[0].sample == [
        BadRow(3, "timestamp", "2099-01-01 00:00:00", LATE),
        BadRow(8, "timestamp", "2026-07-01 12:05:01", LATE),
        BadRow(10, "timestamp", "1970-01-01 00:00:00", EARLY),
        BadRow(12, "timestamp", "4102444800", LATE),
    ]
    assert ds.events.num_rows == 16
    assert max(ds.events["timestamp"].to_pylist()) == datetime(2026, 7, 1, 12, 4, 59)


def test_catalogue_created_at_is_guarded_too(tmp_path):
    events = write(tmp_path / "events.csv", [f"u{k},i{k % 4},view,2026-06-01" for k in range(20)])
    items = write(
        tmp_path / "items.csv", ["i0,2026-01-01", "i1,2099-05-05", "i2,1899-12-30", "i3,"], header="item_id,created_at"
    )
    ds = load_dataset(events, items, max_bad_share=0.5, window=WINDOW)
    assert ds.reports[1].sample == [
        BadRow(2, "created_at", "2099-05-05", LATE),
        BadRow(3, "created_at", "1899-12-30", EARLY),
    ]


def test_the_default_window_ends_at_the_wall_clock(tmp_path):
    soon = utc_now() + timedelta(minutes=2)
    later = utc_now() + timedelta(days=2)
    lines = [f"u{k},i1,view,2026-06-01" for k in range(30)]
    lines += [f"a,i1,view,{soon:%Y-%m-%d %H:%M:%S}", f"b,i1,view,{later:%Y-%m-%d %H:%M:%S}"]
    ds = load_dataset(write(tmp_path / "events.csv", lines))
    assert [(b.row, b.field) for b in ds.reports[0].sample] == [(32, "timestamp")]
    assert "is later than now" in ds.reports[0].sample[0].reason


def test_skew_and_floor_are_settings(monkeypatch):
    monkeypatch.setenv("RECO_CLOCK_SKEW_SECONDS", "60")
    monkeypatch.setenv("RECO_EARLIEST_TIME", "2015-01-01")
    s = Settings()
    assert (s.job.clock_skew_seconds, s.job.earliest_time) == (60.0, datetime(2015, 1, 1))


@pytest.fixture(scope="module")
def shop_files(tmp_path_factory):
    return generate_shop(n_users=300, n_items=100, n_categories=5, days=120, seed=17).write(
        tmp_path_factory.mktemp("timeshop")
    )


def job(settings, events, items, **more) -> JobConfig:
    model = {"als": AlsParams(factors=16), "lists": ListParams(list_size=30)}
    tuned = settings.replace(model=model, job={"gate_days": 14})
    return JobConfig(events=events, items=items, settings=tuned, show_progress=False, gate=True, **more)


def test_a_purchase_dated_2099_is_skipped_and_later_good_runs_still_publish(redis_handle, shop_files, tmp_path):
    events, items = shop_files
    poisoned = tmp_path / "events.csv"
    poisoned.write_text(events.read_text() + "U00001,I00001,purchase,2099-01-01 00:00:00,1,9.99,o-2099\n")
    settings = isolated_settings(redis_handle, "tg")
    first = run_job(job(settings, poisoned, items), redis_handle.client)
    report = first.reports[0]
    assert [(b.field, b.value) for b in report.sample] == [("timestamp", "2099-01-01 00:00:00")]
    assert "is later than now" in report.sample[0].reason
    assert first.as_of <= utc_now() and first.as_of.year == 2026
    assert first.counts["new_arrivals"] > 0
    second = run_job(job(settings, events, items), redis_handle.client)  # the next good nightly run
    assert current_version(redis_handle.client, Keys(settings.redis.key_prefix)) == (second.version, first.version)


def test_a_live_event_from_the_future_stored_before_the_rule_is_never_trained_on(redis_handle, shop_files, tmp_path):
    settings = isolated_settings(redis_handle, "tg", live_archive_dir=tmp_path / "live")
    keys = Keys(settings.redis.key_prefix)
    rows = {
        "user_id": ["U00002", "U00003"],
        "item_id": ["I00002", "I00003"],
        "event_type": ["purchase", "view"],
        "timestamp": [datetime(2099, 3, 3), datetime(2026, 6, 29, 8)],
        "quantity": [1.0, 1.0],
        "price": [5.0, None],
        "order_id": ["o-future", None],
    }
    ingest(redis_handle.client, keys, pa.table(rows, schema=EVENT_SCHEMA))  # as the API stored it before the rule
    events, items = shop_files
    for _ in range(2):  # the archived event stays refused on every run, and never blocks one
        result = run_job(job(settings, events, items), redis_handle.client)
        live = next(r for r in result.reports if r.source == "live events")
        assert (live.rows_read, live.rows_kept, live.rows_bad) == (2, 1, 1)
        assert (live.sample[0].field, live.sample[0].value) == ("timestamp", "2099-03-03 00:00:00")
        assert result.as_of <= utc_now() and result.counts["live_events"] == 1


def test_a_serving_version_poisoned_before_the_rules_no_longer_refuses_good_runs(redis_handle, shop_files):
    settings = isolated_settings(redis_handle, "tg")
    keys = Keys(settings.redis.key_prefix)
    poisoned = Publisher(redis_handle.client, keys)  # what a 2099 row used to publish: a perfect, meaningless score
    poisoned.commit(
        {"as_of": "2099-01-01T00:00:00", "evaluation": {"metric": "ndcg@10", "candidate": 1.0}, "counts": {}}
    )
    events, items = shop_files
    result = run_job(job(settings, events, items), redis_handle.client)
    assert current_version(redis_handle.client, keys) == (result.version, poisoned.version)
    assert f"the serving version {poisoned.version} is dated 2099-01-01T00:00:00, after now" in result.gate["decision"]
    assert manifest(redis_handle.client, keys, result.version)["as_of"] < "2027"


def test_as_of_later_than_now_is_refused_in_one_sentence(redis_handle, shop_files):
    events, items = shop_files
    env = {"RECO_KEY_PREFIX": "tgcli", "RECO_DATA_DIR": str(redis_handle.data_dir or "var")}
    if redis_handle.url:
        env["REDIS_URL"] = redis_handle.url
    result = runner_invoke(["train", "--events", str(events), "--as-of", "2099-01-01", "--no-progress"], env)
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: --as-of 2099-01-01 00:00:00 is later than now")
    assert len(result.output.strip().splitlines()) == 1


def runner_invoke(args, env):
    return CliRunner().invoke(app, args, env=env)


@pytest.fixture()
def api(redis_handle):
    settings = isolated_settings(redis_handle, "tg", api_key="k")
    with TestClient(create_app(settings)) as client:
        yield client


def post(client, **event):
    body = {"events": [{"user_id": "v1", "item_id": "i1", "event_type": "view", **event}]}
    return client.post("/events", json=body, headers={"X-API-Key": "k"})


@pytest.mark.parametrize(
    ("event", "field", "reason"),
    [
        ({"timestamp": "2099-01-01T00:00:00Z"}, "timestamp", "is later than now"),
        ({"timestamp": 4102444800}, "timestamp", "is later than now"),
        ({"timestamp": "1970-01-01T00:00:00Z"}, "timestamp", "is before 1990-01-01"),
        ({"event_type": "purchase", "quantity": 1e308}, "quantity", "is larger than 1,000,000"),
        ({"event_type": "purchase", "price": 1e308}, "price", "is larger than 1,000,000,000"),
    ],
)
def test_post_events_refuses_implausible_values_naming_the_field(api, event, field, reason):
    r = post(api, **event)
    assert r.status_code == 422
    error = r.json()["detail"]["errors"][0]
    assert error["field"] == field and error["reason"].startswith(reason) and error["position"] == 0


def test_post_events_accepts_times_within_the_skew(api):
    soon = datetime.now(timezone.utc) + timedelta(seconds=60)
    assert post(api, timestamp=soon.isoformat()).status_code == 200
    assert post(api).status_code == 200  # no timestamp: now


def test_live_catalogue_updates_refuse_a_created_at_from_the_future(api):
    headers = {"X-API-Key": "k"}
    later = [{"item_id": "i1", "created_at": "2026-06-01T00:00:00Z"}, {"item_id": "i2", "created_at": "2099-01-01"}]
    r = api.post("/items", json=later, headers=headers)
    assert r.status_code == 422
    (error,) = r.json()["detail"]["errors"]
    assert (error["position"], error["field"], error["value"]) == (1, "created_at", "2099-01-01T00:00:00")
    assert error["reason"].startswith("is later than now")
    assert api.post("/items", json=later[:1], headers=headers).status_code == 200
