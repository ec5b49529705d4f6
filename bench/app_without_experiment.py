"""The API without the experiment's work on `/recommend`: no variant drawn, no recommendation id made, neither in
the answer; everything else is the current code.

This is what `/recommend` did before recommendation ids and the control group existed, so bench/controls.py can
measure what the experiment costs like for like (serving the older commit instead would also measure unrelated
changes made since, such as how routes are mounted or the near cache). bench/controls.py checks that its answers
carry neither field, so a rename in the app cannot turn this into the plain service unnoticed. Only the benchmark
serves it, through the same function as ``reco serve``.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI

from api import answer_cache
from api import app as api_app
from api.routes import storefront
from recommender.config import Settings
from recommender.serving.experiment import TREATMENT


def _untagged(settings: Settings, kind: str, version: str, user_id: str | None) -> tuple[str, str]:
    return TREATMENT, ""


def _plain(content: dict[str, Any], variant: str) -> tuple[bytes, bytes]:
    """The answer's bytes with nothing around an (empty) recommendation id: no ``rec_id``, no ``variant``."""
    return orjson.dumps(content), b""


def create_app() -> FastAPI:
    storefront.tagged = _untagged  # type: ignore[assignment]  # looked up at each request, like encode below
    answer_cache.encode = _plain  # type: ignore[assignment]
    return api_app.create_app()


if __name__ == "__main__":
    from bench_app import main

    main("app_without_experiment:create_app", 8002)
