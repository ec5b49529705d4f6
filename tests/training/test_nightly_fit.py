"""The nightly ALS fit: warm-started from the published version's factors, only when they are a fit of the same
settings on earlier events, and as good as a full fit."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from factories import isolated_settings

from cache.keys import Keys
from cache.publisher import manifest
from recommender.config import AlsParams
from recommender.data.demo import generate_shop
from recommender.models.als import fit_als
from recommender.models.warm_start import StoredFactors
from recommender.models.weighting import build_interactions
from training.job import JobConfig, run_job
from training.nightly_fit import NightlyFit

ALS = AlsParams(factors=16, iterations=15)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    shop = generate_shop(n_users=400, n_items=120, n_categories=6, days=150, seed=5)
    shop.paths = shop.write(tmp_path_factory.mktemp("shop"))
    shop.latest = max(shop.events["timestamp"].to_pylist())
    return shop


def _night(redis_handle, settings, shop, as_of=None) -> dict:
    events, items = shop.paths
    cfg = JobConfig(events=events, items=items, settings=settings, gate=False, show_progress=False, as_of=as_of)
    result = run_job(cfg, redis_handle.client)
    return manifest(redis_handle.client, Keys(settings.redis.key_prefix), result.version)


def test_the_second_night_starts_from_the_first_nights_factors(redis_handle, shop):
    settings = isolated_settings(redis_handle, "nf").replace(model={"als": ALS})
    kept = settings.redis.data_dir / "fit" / f"{settings.redis.key_prefix}.npz"
    first = _night(redis_handle, settings, shop, as_of=shop.latest - timedelta(days=1))
    assert first["fit"] == "full fit, 15 iterations"
    stored = StoredFactors.load(kept)
    assert stored is not None and stored.cutoff.isoformat() == first["as_of"] and stored.users.shape[1] == 16
    second = _night(redis_handle, settings, shop)
    assert second["fit"] == f"warm start from the factors as of {first['as_of']}, 3 iterations"
    assert StoredFactors.load(kept).cutoff.isoformat() == second["as_of"]  # the next night starts from this one
    # an earlier --as-of than the kept factors' (they saw later events), or other settings: from scratch
    assert _night(redis_handle, settings, shop, as_of=shop.latest - timedelta(days=2))["fit"].startswith("full fit")
    other = settings.replace(model={"als": ALS.model_copy(update={"regularization": 0.5})})
    assert _night(redis_handle, other, shop)["fit"] == "full fit, 15 iterations"
    off = settings.replace(job={"fit_warm_iterations": 0})
    assert _night(redis_handle, off, shop)["fit"] == "full fit, 15 iterations"


def test_a_warm_night_lands_as_near_the_full_fit_as_another_full_fit(tmp_path, redis_handle, shop):
    """Three iterations from last night's factors give tonight's lists the scores of a full fit (as near as a full
    fit from another random start); three from random factors do not."""
    settings = isolated_settings(redis_handle, "nq").replace(model={"als": ALS})
    settings = settings.replace(redis={"data_dir": tmp_path})
    m = settings.model
    night1 = shop.events.filter(pc.less_equal(shop.events["timestamp"], pa.scalar(shop.latest - timedelta(days=1))))
    cut1 = shop.latest - timedelta(days=1)
    first = NightlyFit(settings, "p", cut1)
    inter1 = build_interactions(night1, m.weights.as_dict(), m.half_life_days, cut1)
    first.fit(inter1, lambda: fit_als(inter1.matrix, ALS))
    first.keep()
    inter = build_interactions(shop.events, m.weights.as_dict(), m.half_life_days, shop.latest)
    warm = NightlyFit(settings, "p", shop.latest)
    assert warm.start is not None
    models = {
        "warm": warm.fit(inter, lambda: pytest.fail("a warm start was at hand")),
        "full": fit_als(inter.matrix, ALS),
        "seed7": fit_als(inter.matrix, ALS.model_copy(update={"random_state": 7})),
        "cold": fit_als(inter.matrix, ALS.model_copy(update={"iterations": 3})),
    }
    scores = {name: model.user_factors @ model.item_factors.T for name, model in models.items()}
    off = {name: np.linalg.norm(scores[name] - scores["full"]) for name in ("warm", "seed7", "cold")}
    assert off["warm"] <= 1.05 * off["seed7"] < off["cold"], off


def test_the_start_is_read_at_the_fit_and_a_changed_one_is_not_used(tmp_path, redis_handle, shop):
    """The stored factors stay on disk until the fit (only their stamp is read when the night begins); if they are
    replaced in between (another run kept its own), the fit runs from scratch and says why."""
    settings = isolated_settings(redis_handle, "nl").replace(model={"als": ALS}, redis={"data_dir": tmp_path})
    m = settings.model
    inter = build_interactions(shop.events, m.weights.as_dict(), m.half_life_days, shop.latest)
    yesterday = shop.latest - timedelta(days=1)
    first = NightlyFit(settings, "p", yesterday)
    first.fit(inter, lambda: fit_als(inter.matrix, ALS))
    first.keep()
    night = NightlyFit(settings, "p", shop.latest)
    assert not isinstance(night.start, StoredFactors) and night.start.cutoff == yesterday  # a stamp, not factors
    replaced = StoredFactors.load(night.path)
    replaced.cutoff = yesterday - timedelta(hours=1)
    replaced.save(night.path)
    fulls = []
    night.fit(inter, lambda: fulls.append(1) or fit_als(inter.matrix, ALS))
    assert fulls == [1] and night.how.startswith("full fit") and "changed" in night.how
