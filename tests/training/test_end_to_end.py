"""End to end through the `reco` command on a generated shop: the job recovers the shop's known structure."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

from cache.keys import Keys
from cache.on_request import customer_lists
from cache.publisher import current_version
from cache.reader import read_value
from recommender.data.demo import generate_shop
from training.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def env(redis_handle):
    values = {"RECO_KEY_PREFIX": f"e2e{uuid.uuid4().hex[:8]}", "RECO_DATA_DIR": str(redis_handle.data_dir or "var")}
    if redis_handle.url:
        values["REDIS_URL"] = redis_handle.url
    return values


@pytest.fixture(scope="module")
def trained(tmp_path_factory, env, redis_handle):
    out = tmp_path_factory.mktemp("shop")
    result = runner.invoke(
        app, ["demo-data", "--out", str(out), "--users", "600", "--items", "150", "--days", "150", "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    # A few bad rows in the same file: skipped, counted, the rest kept.
    with open(out / "events.csv", "a") as fh:
        fh.write('"U00001","I00001","wishlist","2026-06-01 10:00:00",1,1.0,\n')
        fh.write('"","I00001","view","2026-06-01 10:00:00",1,1.0,\n')
        fh.write('"U00001","I00001","view","not a date",1,1.0,\n')
    result = runner.invoke(
        app, ["train", "--events", str(out / "events.csv"), "--items", str(out / "items.csv"), "--no-progress"], env=env
    )
    assert result.exit_code == 0, result.output
    keys = Keys(env["RECO_KEY_PREFIX"])
    version = current_version(redis_handle.client, keys)[0]
    shop = generate_shop(n_users=600, n_items=150, days=150, seed=3)

    def get(suffix):
        """A stored value; a customer's lists as served, also when computed on request (not active lately)."""
        value = read_value(redis_handle.client, keys, version, suffix)
        kind, _, tail = suffix.partition(":")
        user = Keys.id_of(tail)
        if value is None and kind in ("user", "next"):
            lists = customer_lists(redis_handle.client, keys, version, [user]).get(user)
            value = lists and lists[0 if kind == "user" else 1]
        return value

    return {"output": result.output, "shop": shop, "get": get, "keys": keys, "version": version, "dir": out}


def test_summary_reports_rows_users_items_stages_and_bad_rows(trained):
    out = " ".join(trained["output"].split())
    for text in [
        "3 bad",
        "event_type is not one of view, cart, purchase, return, impression, click",
        "user_id is empty",
        "timestamp is not a date-time",
        "personal lists",
        "time: fit",
        "time: total",
        "published version",
    ]:
        assert text in out, text
    assert f"row {trained['shop'].events.num_rows + 1}:" in out  # the first bad row, by its data row number


def test_personal_picks_follow_each_users_category_taste(trained):
    shop, get = trained["shop"], trained["get"]
    category = dict(zip(shop.items["item_id"].to_pylist(), shop.items["category"].to_pylist()))
    shares = []
    for user, favourites in shop.truth.user_categories.items():
        picks = get(Keys.user(user))
        if picks:
            top = [item for item, _ in picks[:10]]
            shares.append(sum(category[i] in favourites for i in top) / len(top))
    # 8 categories, 1-2 favourites: random picks would land in a favourite ~20% of the time.
    assert len(shares) > 500 and sum(shares) / len(shares) > 0.6


def test_similar_items_share_the_category(trained):
    shop, get = trained["shop"], trained["get"]
    category = dict(zip(shop.items["item_id"].to_pylist(), shop.items["category"].to_pylist()))
    same = [
        category[s[0]] == category[item] for item in category if (sims := get(Keys.similar(item))) for s in sims[:5]
    ]
    assert sum(same) / len(same) > 0.6


def test_consumables_due_again_are_in_next_purchase(trained):
    shop, get = trained["shop"], trained["get"]
    end = shop.events["timestamp"].to_pylist()
    as_of = max(end)
    purchases = {}
    for row in (
        shop.events.filter(shop.events["event_type"].to_numpy(zero_copy_only=False) == "purchase")
        .select(["user_id", "item_id", "timestamp"])
        .to_pylist()
    ):
        purchases.setdefault((row["user_id"], row["item_id"]), []).append(row["timestamp"])
    due, found = 0, 0
    for user, cycles in shop.truth.cycle_buyers.items():
        for item, cycle in cycles:
            last = max(purchases.get((user, item), [datetime.min]))
            if timedelta(days=0) <= (last + timedelta(days=cycle)) - as_of <= timedelta(days=20):
                due += 1
                picks = get(Keys.next(user)) or []
                found += any(p["item_id"] == item and p["reason"] == "due_again" for p in picks[:10])
    assert due > 20 and found / due > 0.7


def test_new_arrivals_and_bestsellers_are_published(trained):
    shop, get = trained["shop"], trained["get"]
    created = dict(zip(shop.items["item_id"].to_pylist(), shop.items["created_at"].to_pylist()))
    as_of = max(shop.events["timestamp"].to_pylist())
    fresh = get(Keys.NEW)
    assert fresh and all(as_of - created[i] <= timedelta(days=30) for i, _ in fresh)
    assert len(get(Keys.best(None))) >= 10 and get(Keys.CATEGORIES)


def test_rerun_publishes_a_new_version_and_rollback_returns(trained, env, redis_handle):
    d = trained["dir"]
    result = runner.invoke(
        app,
        [
            "train",
            "--events",
            str(d / "events.csv"),
            "--items",
            str(d / "items.csv"),
            "--no-progress",
            "--factors",
            "8",
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    new, previous = current_version(redis_handle.client, trained["keys"])
    assert previous == trained["version"] and new != previous
    result = runner.invoke(app, ["rollback"], env=env)
    assert result.exit_code == 0 and trained["version"] in result.output
    assert current_version(redis_handle.client, trained["keys"]) == (trained["version"], new)
    runner.invoke(app, ["rollback"], env=env)


def test_unusable_input_fails_with_one_sentence_and_publishes_nothing(tmp_path, env, redis_handle):
    env = {**env, "RECO_KEY_PREFIX": f"bad{uuid.uuid4().hex[:8]}"}  # publishes: keep the shared fixture's versions
    missing = runner.invoke(app, ["train", "--events", str(tmp_path / "nope.csv"), "--no-progress"], env=env)
    assert missing.exit_code == 2 and "nope.csv' does not exist" in missing.output and "Traceback" not in missing.output
    (tmp_path / "nocol.csv").write_text("user_id,item_id,timestamp\nu1,i1,2026-01-01\n")
    nocol = runner.invoke(app, ["train", "--events", str(tmp_path / "nocol.csv"), "--no-progress"], env=env)
    assert nocol.exit_code == 2 and "no column 'event_type'" in nocol.output
    before = current_version(redis_handle.client, Keys(env["RECO_KEY_PREFIX"]))
    lines = ["user_id,item_id,event_type,timestamp"] + [f"u{i},i{i % 7},view,2026-01-0{1 + i % 9}" for i in range(90)]
    lines += [f"u{i},i1,teleport,2026-01-01" for i in range(10)]
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    bad = runner.invoke(app, ["train", "--events", str(tmp_path / "bad.csv"), "--no-progress"], env=env)
    assert bad.exit_code == 2 and "10.0%" in bad.output and "Nothing was published" in bad.output
    assert current_version(redis_handle.client, Keys(env["RECO_KEY_PREFIX"])) == before
    ok = runner.invoke(
        app, ["train", "--events", str(tmp_path / "bad.csv"), "--no-progress", "--max-bad-share", "0.2"], env=env
    )
    assert ok.exit_code == 0, ok.output


def test_report_writes_a_self_contained_page(trained, tmp_path):
    d = trained["dir"]
    out = tmp_path / "report.html"
    result = runner.invoke(
        app, ["report", "--events", str(d / "events.csv"), "--items", str(d / "items.csv"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert html.count("data:image/png;base64,") >= 4 and "http://" not in html and "https://" not in html
    bad = runner.invoke(app, ["report", "--events", str(d / "events.csv"), "--period", "fortnight"])
    assert bad.exit_code == 2 and "--period must be one of" in bad.output


def test_personal_picks_offer_consumables_due_again(trained):
    shop, get = trained["shop"], trained["get"]
    as_of = max(shop.events["timestamp"].to_pylist())
    last = {}
    for row in (
        shop.events.filter(pc.equal(shop.events["event_type"], "purchase"))
        .select(["user_id", "item_id", "timestamp"])
        .to_pylist()
    ):
        key = (row["user_id"], row["item_id"])
        last[key] = max(last.get(key, row["timestamp"]), row["timestamp"])
    due = [
        (u, i)
        for u, cycles in shop.truth.cycle_buyers.items()
        for i, c in cycles
        if (u, i) in last and timedelta(0) <= last[(u, i)] + timedelta(days=c) - as_of <= timedelta(days=20)
    ]
    found = sum(any(item == i for item, _ in (get(Keys.user(u)) or [])[:10]) for u, i in due)
    assert len(due) > 20 and found / len(due) > 0.7


def test_gate_refuses_a_worse_model_and_force_publishes(trained, env, redis_handle):
    env = {**env, "RECO_KEY_PREFIX": f"gate{uuid.uuid4().hex[:8]}"}
    keys = Keys(env["RECO_KEY_PREFIX"])
    d = trained["dir"]
    good = ["train", "--events", str(d / "events.csv"), "--items", str(d / "items.csv"), "--no-progress"]
    assert runner.invoke(app, good, env=env).exit_code == 0
    before = current_version(redis_handle.client, keys)
    worse = good + ["--factors", "1", "--iterations", "1"]
    worse_env = {**env, "RECO_PERSONAL_REPEAT_SHARE": "0"}  # discovery only, from a one-factor model
    refused = runner.invoke(app, worse, env=worse_env)
    assert refused.exit_code == 3, refused.output
    assert "promotion gate kept the current version" in refused.output and "ndcg@10" in refused.output
    assert current_version(redis_handle.client, keys) == before
    forced = runner.invoke(app, worse + ["--force-publish"], env=worse_env)
    assert forced.exit_code == 0, forced.output
    assert current_version(redis_handle.client, keys)[1] == before[0]


def test_export_next_purchase_as_json_lines_and_csv(trained, env, redis_handle, tmp_path):
    import csv
    import json

    keys, version = trained["keys"], current_version(redis_handle.client, trained["keys"])[0]
    events = trained["shop"].events
    expected = len(pc.unique(events.filter(pc.equal(events["event_type"], "purchase"))["user_id"]))
    stored = len(list(redis_handle.client.scan_iter(match=keys.version_prefix(version) + "next:*")))
    assert 0 < stored < expected  # customers not active lately are exported from lists computed on request
    result = runner.invoke(
        app, ["export", "next-purchase", "--out", str(tmp_path / "np.jsonl"), "--n", "5", "--no-progress"], env=env
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (tmp_path / "np.jsonl").read_text().splitlines()]
    assert len(lines) == expected > 100 and len({line["user_id"] for line in lines}) == expected
    assert all(line["version"] == version and 1 <= len(line["items"]) <= 5 for line in lines)
    assert {"item_id", "score", "reason", "due", "title", "category", "price"} <= set(lines[0]["items"][0])
    result = runner.invoke(
        app, ["export", "next-purchase", "--out", str(tmp_path / "np.csv"), "--n", "3", "--no-progress"], env=env
    )
    assert result.exit_code == 0, result.output
    with open(tmp_path / "np.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len({r["user_id"] for r in rows}) == expected and all(r["rank"] in {"1", "2", "3"} for r in rows)
    assert runner.invoke(app, ["export", "next-purchase", "--out", str(tmp_path / "np.txt")], env=env).exit_code == 2
