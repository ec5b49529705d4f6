"""Similar items computed on request (items without a recent event) are the lists the job would have precomputed.

The same shop is trained twice: once precomputing every item's similar items (``similar_active_days`` 0), once with
a one-day window so most items are left to the API. Every item must get exactly the same answer either way, and
computing an item's list on request gives the stored list of an item the job did precompute.
"""

from __future__ import annotations

import pytest
from factories import train_variants
from fastapi.testclient import TestClient

from api.app import create_app
from api.session_models import session_model
from cache.keys import Keys
from cache.on_request import similar_list
from cache.reader import read_value
from recommender.config import ListParams


@pytest.fixture(scope="module")
def runs(redis_handle, tmp_path_factory):
    variants = {name: ListParams(similar_active_days=days, blend=False) for name, days in (("all", 0), ("lazy", 1))}
    return train_variants(redis_handle, tmp_path_factory.mktemp("shop"), 5, variants)


def stored_similar(redis_handle, run, item: str):
    settings, result = run
    return read_value(redis_handle.client, Keys(settings.redis.key_prefix), result.version, Keys.similar(item))


@pytest.fixture(scope="module")
def model_items(redis_handle, runs):
    settings, result = runs["all"]
    keys = Keys(settings.redis.key_prefix)
    return read_value(redis_handle.client, keys, result.version, Keys.FACTOR_ITEMS)


def test_only_items_with_recent_events_are_precomputed(redis_handle, runs, model_items):
    every, lazy = runs["all"][1].counts["similar_lists"], runs["lazy"][1].counts["similar_lists"]
    assert every == len(model_items) and 0 < lazy < every - 30
    left = [i for i in model_items if stored_similar(redis_handle, runs["lazy"], i) is None]
    assert len(left) == every - lazy


def test_the_api_answers_every_item_like_the_precomputed_lists(redis_handle, runs, model_items):
    computed = 0
    with TestClient(create_app(runs["all"][0])) as full, TestClient(create_app(runs["lazy"][0])) as lazy:
        for item in model_items:
            a, b = full.get(f"/similar/{item}?n=50"), lazy.get(f"/similar/{item}?n=50")
            assert a.status_code == b.status_code == 200, item
            assert a.json()["items"] == b.json()["items"] and len(a.json()["items"]) > 10, item
            computed += stored_similar(redis_handle, runs["lazy"], item) is None
        assert lazy.get("/similar/no-such-item").status_code == 404
    assert computed > 30


def test_a_stored_list_computed_on_request_is_the_same(redis_handle, runs, model_items):
    settings, result = runs["lazy"]
    client, keys, version = redis_handle.client, Keys(settings.redis.key_prefix), result.version
    model = session_model(
        client.get(keys.key(version, Keys.FACTORS)),
        client.get(keys.key(version, Keys.FACTOR_ITEMS)),
        read_value(client, keys, version, Keys.MANIFEST),
    )
    catalogue = read_value(client, keys, version, Keys.CATALOGUE)
    stored = [i for i in model_items if stored_similar(redis_handle, runs["lazy"], i) is not None]
    assert stored
    for item in stored:
        assert similar_list(model, catalogue, item, 50) == stored_similar(redis_handle, runs["lazy"], item), item
    assert similar_list(model, catalogue, "no-such-item", 50) is None
