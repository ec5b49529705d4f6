"""Tuning: bounded search on a validation split inside the training period; the settings file round trip."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pyarrow.compute as pc
import pytest

from recommender.config import AlsParams, EventWeights, ModelSettings, load_tuned, tuned_params
from recommender.data.demo import generate_shop
from recommender.evaluation.tuning import tune, write_tuned


@pytest.fixture(scope="module")
def shop():
    return generate_shop(n_users=300, n_items=100, days=120, seed=7)


@pytest.fixture(scope="module")
def result(shop):
    start = ModelSettings(als=AlsParams(factors=8, iterations=5)).with_repeat_share(0.9)
    return tune(shop.events, shop.items, start, test_days=14, trials=3, seed=1, progress=False)


def test_budget_and_start_trial(result) -> None:
    assert len(result.trials) == 3
    assert result.trials[0].params.als.factors == 8  # the starting settings are always tried
    best = max(t.als_objective for t in result.trials)
    assert result.as_dict()["best"]["als_new_ndcg@10"] == best >= result.trials[0].als_objective
    assert result.best.repeat_share in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def test_validation_lies_before_the_evaluation_window(shop, result) -> None:
    newest = pc.max(shop.events["timestamp"]).as_py()
    evaluation_cutoff = newest - timedelta(days=14)
    v = result.validation
    assert datetime.fromisoformat(v["evaluation_cutoff"]) == evaluation_cutoff
    assert datetime.fromisoformat(v["end"]) <= evaluation_cutoff + timedelta(microseconds=1)
    assert datetime.fromisoformat(v["cutoff"]) < evaluation_cutoff - timedelta(days=13)


def test_settings_file_round_trip(result, tmp_path) -> None:
    path = write_tuned(result, tmp_path / "settings" / "shop.json", dataset="shop", source={"format": "generic"})
    doc = json.loads(path.read_text())
    assert doc["dataset"] == "shop" and len(doc["search"]["trials"]) == 3
    tuned = load_tuned(path)
    assert set(tuned) == {"als", "weights", "half_life_days", "repeat_share"}
    assert AlsParams(**tuned["als"]) == result.best.als
    assert EventWeights(**tuned["weights"]).as_dict() == result.best.weights.as_dict()
    params = tuned_params(path)
    assert params.half_life_days == result.best.half_life_days and params.repeat_share == result.best.repeat_share


def test_load_tuned_rejects_other_files(tmp_path) -> None:
    (tmp_path / "a.json").write_text('{"factors": 3}')
    with pytest.raises(ValueError, match="not a tuned-settings file"):
        load_tuned(tmp_path / "a.json")
    (tmp_path / "b.json").write_text('{"settings": {"als": {"factors": 0}}}')
    with pytest.raises(ValueError):
        load_tuned(tmp_path / "b.json")
    (tmp_path / "c.json").write_text('{"settings": {"colour": "red"}}')
    with pytest.raises(ValueError, match="unknown settings"):
        load_tuned(tmp_path / "c.json")
    with pytest.raises(ValueError, match="cannot read"):
        load_tuned(tmp_path / "missing.json")
