"""The night's holdout is split once and shared: the blend learns on the gate's split, ALS fit and repeat model."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recommender.config import AlsParams, ModelSettings
from recommender.data.demo import generate_shop
from recommender.evaluation import blend_learning
from recommender.models import repeat
from recommender.models.als_recommender import AlsRecommender
from recommender.models.weighting import latest_timestamp
from training import blend_step
from training.night_holdout import NightHoldout


@pytest.fixture(scope="module")
def shop():
    return generate_shop(n_users=300, n_items=80, n_categories=5, days=120, seed=3, kind="grocery")


def test_the_split_is_made_once_and_dropped_on_release(shop):
    holdout = NightHoldout(shop.events, 21)
    split = holdout.split()
    assert holdout.split() is split and not holdout.too_short
    assert split.cutoff == latest_timestamp(shop.events) - timedelta(days=21)
    holdout.release()
    with pytest.raises(RuntimeError, match="released"):
        holdout.split()
    recent = shop.events.filter(
        pc.greater(shop.events["timestamp"], pa.scalar(latest_timestamp(shop.events) - timedelta(days=30)))
    )
    assert NightHoldout(recent, 21).too_short  # 30 days of history: not two 21-day holdouts


def test_the_blend_learns_on_the_gates_fit_without_fitting_again(shop, monkeypatch):
    settings = ModelSettings(als=AlsParams(factors=8, iterations=5))
    holdout = NightHoldout(shop.events, 21)
    als = AlsRecommender(settings.als, settings.weights.as_dict(), settings.half_life_days)
    holdout.fit = als.fit(holdout.split().train, items=shop.items).fitted  # what the gate leaves

    gate_rows = holdout.split().train.num_rows
    real_fit = AlsRecommender.fit

    def no_second_fit(self, train, *args, **kwargs):  # the earlier label window's own fit, on fewer events, is fine
        if train.num_rows >= gate_rows:
            raise AssertionError("the blend fitted ALS again")
        return real_fit(self, train, *args, **kwargs)

    monkeypatch.setattr(AlsRecommender, "fit", no_second_fit)
    outcome, block = blend_step.learn(holdout, shop.items, settings)
    assert outcome is not None and "validation" in block, block
    assert block["customers"]["earlier_window"] > 0  # it did learn from the window before, with a fit of its own


def test_the_blend_learns_with_the_gates_repeat_model(shop, monkeypatch):
    settings = ModelSettings(als=AlsParams(factors=8, iterations=5))
    holdout = NightHoldout(shop.events, 21)
    train = holdout.split().train
    holdout.fit = AlsRecommender(settings.als, settings.weights.as_dict(), settings.half_life_days).fit(train).fitted
    learnt, _ = blend_step.learn(holdout, shop.items, settings)  # builds its own repeat model
    holdout.repeats = repeat.repeat_candidates(train, holdout.fit.as_of, settings.lists.next_purchase_horizon_days)

    real_model = blend_learning.repeat_candidates

    def no_second_model(events, *args, **kwargs):  # the earlier label window's own model is fine
        if events.num_rows >= train.num_rows:
            raise AssertionError("the blend built the repeat model again")
        return real_model(events, *args, **kwargs)

    monkeypatch.setattr(blend_learning, "repeat_candidates", no_second_model)
    shared, block = blend_step.learn(holdout, shop.items, settings)
    assert "validation" in block and shared.report["validation"] == learnt.report["validation"]
    holdout.release()
    assert holdout.repeats is None and holdout.fit is None
