"""Lists computed on request (customers not active lately) are the lists the job would have precomputed.

The same shop is trained twice: once precomputing every customer (active window 0), once with a one-day window so
most customers are left to the API. Every such customer must get exactly the precomputed lists, through the API
(single, batch, segment strategy) and through the export.
"""

from __future__ import annotations

import json

import pytest
from factories import train_variants
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from cache.keys import Keys
from cache.on_request import customer_lists
from cache.reader import read_value
from recommender.config import ListParams
from training.cli import app as cli


@pytest.fixture(scope="module")
def runs(redis_handle, tmp_path_factory):
    variants = {  # on request: the policy, as precomputed
        name: ListParams(list_size=40, active_days=days, blend=False) for name, days in (("all", 0), ("lazy", 1))
    }
    return train_variants(redis_handle, tmp_path_factory.mktemp("shop"), 11, variants)


def stored(redis_handle, run, kind: str, user: str):
    settings, result = run
    return read_value(redis_handle.client, Keys(settings.redis.key_prefix), result.version, getattr(Keys, kind)(user))


@pytest.fixture(scope="module")
def lazy_users(redis_handle, runs):
    settings, result = runs["lazy"]
    keys = Keys(settings.redis.key_prefix)
    pattern = keys.version_prefix(result.version) + "cust:*"
    users = sorted(
        Keys.id_of(k.decode().rsplit(":", 1)[1]) for k in redis_handle.client.scan_iter(match=pattern, count=1000)
    )
    assert result.counts["on_request_customers"] == len(users) > 150
    assert result.counts["personal_lists"] + len(users) == runs["all"][1].counts["personal_lists"]
    return users


def test_lists_left_to_compute_are_not_stored(redis_handle, runs, lazy_users):
    assert all(stored(redis_handle, runs["lazy"], "user", u) is None for u in lazy_users)


def test_computed_lists_equal_the_precomputed_ones(redis_handle, runs, lazy_users):
    settings, result = runs["lazy"]
    computed = customer_lists(redis_handle.client, Keys(settings.redis.key_prefix), result.version, lazy_users)
    buyers = 0
    for user in lazy_users:
        personal, nxt = computed[user]
        assert personal == stored(redis_handle, runs["all"], "user", user), user
        assert nxt == stored(redis_handle, runs["all"], "next", user), user
        buyers += nxt is not None
    assert buyers > 50


def test_the_api_answers_customers_left_to_compute_like_precomputed_ones(redis_handle, runs, lazy_users):
    with TestClient(create_app(runs["all"][0])) as full, TestClient(create_app(runs["lazy"][0])) as lazy:
        for user in lazy_users[::5]:
            for url in (f"/recommend?user_id={user}&n=40", f"/next-purchase/{user}?n=40"):
                a, b = full.get(url), lazy.get(url)
                assert a.status_code == b.status_code, url
                if a.status_code == 200:
                    assert a.json()["items"] == b.json()["items"], url
                    assert a.json().get("source") == b.json().get("source"), url
            a = full.get(f"/next-purchase/{user}?n=10&strategy=segment").json()
            b = lazy.get(f"/next-purchase/{user}?n=10&strategy=segment").json()
            assert a.get("items") == b.get("items") and a.get("strategy") == b.get("strategy")
        for strategy in ("default", "segment"):
            body = {"user_ids": lazy_users[:200], "n": 20, "strategy": strategy}
            a = full.post("/next-purchase/batch", json=body).json()
            b = lazy.post("/next-purchase/batch", json=body).json()
            assert a["results"] == b["results"] and a["unknown"] == b["unknown"] and len(a["results"]) > 50


def test_export_covers_every_customer_either_way(redis_handle, runs, tmp_path):
    runner = CliRunner()
    exported = {}
    for name, (settings, _) in runs.items():
        env = {"RECO_KEY_PREFIX": settings.redis.key_prefix, "RECO_DATA_DIR": str(settings.redis.data_dir)}
        if settings.redis.url:
            env["REDIS_URL"] = settings.redis.url
        out = tmp_path / f"{name}.jsonl"
        result = runner.invoke(
            cli, ["export", "next-purchase", "--out", str(out), "--n", "20", "--no-progress"], env=env
        )
        assert result.exit_code == 0, result.output
        exported[name] = {row["user_id"]: row["items"] for row in map(json.loads, out.read_text().splitlines())}
    assert len(exported["all"]) > 100 and exported["lazy"] == exported["all"]
