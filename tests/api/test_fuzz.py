"""Property-based fuzzing of every operation in the OpenAPI schema (schemathesis): no input makes a server error."""

from __future__ import annotations

import pytest
import schemathesis
from factories import isolated_settings
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from api.app import create_app
from recommender.config import AlsParams, ListParams
from recommender.data.demo import generate_shop
from training.job import JobConfig, run_job


@pytest.fixture(scope="module")
def api_schema(redis_handle, tmp_path_factory):
    shop = generate_shop(n_users=100, n_items=50, n_categories=4, days=90, seed=9)
    events, items = shop.write(tmp_path_factory.mktemp("fuzz"))
    cfg_settings = isolated_settings(
        redis_handle, "fz", api_key="fuzz-key", live_archive_dir=tmp_path_factory.mktemp("live")
    )
    run_job(
        JobConfig(
            events=events,
            items=items,
            settings=cfg_settings.replace(model={"als": AlsParams(factors=8), "lists": ListParams(list_size=20)}),
            show_progress=False,
        ),
        redis_handle.client,
    )
    app = create_app(cfg_settings)
    with TestClient(app):  # runs the app's start-up (Redis connection) for the fuzzer's own requests
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


def test_no_input_causes_a_server_error(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 14
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def no_server_error(case):
            case.call_and_validate(checks=[not_a_server_error], headers={"X-API-Key": "fuzz-key"})

        no_server_error()
