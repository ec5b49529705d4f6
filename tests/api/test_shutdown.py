"""The API's shutdown always ends: its background refresh is stopped even when a cancellation arrives inside a
Redis call (it used to hang now and then, holding up the process and the test suite)."""

from __future__ import annotations

import pytest
from factories import isolated_settings
from fastapi.testclient import TestClient

from api.app import create_app


@pytest.mark.timeout(120)
def test_start_and_stop_the_app_many_times(redis_handle):
    settings = isolated_settings(redis_handle, "down")
    for _ in range(20):
        with TestClient(create_app(settings)) as client:
            assert client.get("/healthz").status_code == 200
