"""The promotion gate's warm start: last run's gate factors start the next gate fit, only when that cannot leak."""

from __future__ import annotations

import gc
import math
import weakref
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import scipy.sparse as sp
from factories import isolated_settings

from cache.keys import Keys
from cache.publisher import manifest
from recommender.config import AlsParams, ModelSettings, Settings
from recommender.data.demo import generate_shop
from recommender.evaluation.gate import holdout_context, holdout_metrics, score_holdout
from recommender.models import warm_start
from recommender.models.als_recommender import AlsRecommender
from recommender.models.warm_start import StoredFactors, carry_over, earlier_model, fit_from, fit_on
from recommender.models.weighting import Interactions
from training.gate_fit import GateWarmStart
from training.job import JobConfig, run_job

CUT = datetime(2026, 6, 1)


def factors(cutoff: datetime, settings: str = "s") -> StoredFactors:
    ids = np.array(["a", "b"], dtype=object)
    return StoredFactors(ids, ids, np.ones((2, 3), np.float32), np.ones((2, 3), np.float32), cutoff, settings)


def test_a_start_is_used_only_from_an_earlier_cutoff_with_the_same_settings():
    assert factors(CUT - timedelta(days=1)).usable(CUT, "s", 7)
    assert factors(CUT).usable(CUT, "s", 7)
    assert not factors(CUT + timedelta(days=1)).usable(CUT, "s", 7)  # it saw holdout days: would leak
    assert not factors(CUT - timedelta(days=8)).usable(CUT, "s", 7)  # too old to be a good start
    assert not factors(CUT - timedelta(days=1), "other").usable(CUT, "s", 7)  # other settings


def test_save_and_load_round_trip(tmp_path):
    f = factors(CUT)
    f.save(tmp_path / "g.npz")
    back = StoredFactors.load(tmp_path / "g.npz")
    assert back is not None and back.cutoff == CUT and back.settings == "s"
    assert back.user_ids.tolist() == ["a", "b"] and np.array_equal(back.items, f.items)
    (tmp_path / "bad.npz").write_bytes(b"not a file")
    assert StoredFactors.load(tmp_path / "bad.npz") is None and StoredFactors.load(tmp_path / "none.npz") is None


def test_the_earlier_model_keeps_its_factors_and_folds_in_new_customers():
    als = AlsParams(factors=3, regularization=0.1)
    earlier = StoredFactors(
        np.array(["a", "b"], dtype=object),
        np.array(["x", "y"], dtype=object),
        np.array([[1, 0, 0], [0, 1, 0]], np.float32),
        np.array([[1, 0, 0], [0, 0, 1]], np.float32),
        CUT,
        "s",
    )
    # tonight: customer "c" and item "z" are new; "c" bought "x" only
    matrix = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 1], [2, 0, 0]], np.float32))
    inter = Interactions(matrix, np.array(["b", "a", "c"], dtype=object), np.array(["x", "y", "z"], dtype=object), CUT)
    model = earlier_model(inter, als, earlier)
    assert np.array_equal(model.user_factors[:2], earlier.users[[1, 0]])  # known customers, by id
    assert np.array_equal(model.item_factors[:2], earlier.items) and not model.item_factors[2].any()
    scores = model.user_factors[2] @ model.item_factors.T  # "c" folded in from tonight's row: it likes "x"
    assert scores[0] > 0.5 and scores[0] > abs(scores[1]) and scores[2] == 0


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    shop = generate_shop(n_users=400, n_items=120, n_categories=6, days=150, seed=5)
    shop.paths = shop.write(tmp_path_factory.mktemp("shop"))
    return shop


def test_a_warm_start_judges_like_a_full_fit(shop):
    als = AlsParams(factors=16, iterations=15)
    params = ModelSettings(als=als)
    latest = max(shop.events["timestamp"].to_pylist())
    night1 = shop.events.filter(pc.less_equal(shop.events["timestamp"], pa.scalar(latest - timedelta(days=1))))
    kept, models = {}, {}

    def keep(name, start, iterations):
        def fit(inter):
            with_start = start() if start else None
            model = models[name] = fit_from(
                inter, als.model_copy(update={"iterations": iterations}), with_start, iterations
            )
            kept[name] = StoredFactors(inter.user_ids, inter.item_ids, model.user_factors, model.item_factors, CUT, "")
            return model

        return fit

    holdout_metrics(night1, shop.items, params, fit=keep("night1", None, als.iterations))
    full = holdout_metrics(shop.events, shop.items, params, fit=keep("full", None, als.iterations))["candidate"]
    warm = holdout_metrics(shop.events, shop.items, params, fit=keep("warm", lambda: kept["night1"], 3))["candidate"]
    holdout_metrics(shop.events, shop.items, params, fit=keep("cold", None, 3))
    other_seed = als.model_copy(update={"random_state": 7})
    holdout_metrics(
        shop.events,
        shop.items,
        ModelSettings(als=other_seed),
        fit=lambda inter: models.setdefault("seed7", fit_from(inter, other_seed, None, other_seed.iterations)),
    )
    assert full > 0.05 and abs(warm / full - 1) < 0.02  # well inside the gate's own margin

    def scores(name):  # user x item scores: what the lists are made of (and independent of the factors' rotation)
        return models[name].user_factors @ models[name].item_factors.T

    # Three iterations from last night's factors land as near the full fit as another full fit (other random start)
    # does; three from random factors do not.
    off = {name: np.linalg.norm(scores(name) - scores("full")) for name in ("warm", "cold", "seed7")}
    assert off["warm"] <= 1.05 * off["seed7"] < off["cold"], off


def test_the_job_warm_starts_its_gate_from_the_previous_run(redis_handle, shop):
    settings = isolated_settings(redis_handle, "gw")
    events, items = shop.paths
    als = AlsParams(factors=16, iterations=10)
    hows, references = [], []
    for _ in range(2):
        every_user = settings.replace(model={"als": als}, job={"gate_users": 0})
        cfg = JobConfig(events=events, items=items, settings=every_user, gate=True, show_progress=False)
        result = run_job(cfg, redis_handle.client)
        evaluation = manifest(redis_handle.client, Keys(settings.redis.key_prefix), result.version)["evaluation"]
        hows.append(evaluation["fit"])
        references.append("tifu_knn" in evaluation["figures"]["warm"])
    assert hows == ["full fit", "warm start, 3 iterations"]
    assert references == [True, False]  # the TIFU-KNN reference only on the nights whose gate fits from scratch
    assert (settings.redis.data_dir / "gate" / f"{settings.redis.key_prefix}.npz").is_file()
    changed = JobConfig(
        events=events, items=items, settings=settings.replace(model={"als": AlsParams(factors=8)}), gate=True
    )
    changed.show_progress = False
    result = run_job(changed, redis_handle.client)
    assert (
        manifest(redis_handle.client, Keys(settings.redis.key_prefix), result.version)["evaluation"]["fit"]
        == "full fit"
    )


def test_a_drift_free_shop_is_promoted_on_its_second_night(redis_handle, shop):
    """Night 2 is held against the serving version scored on night 2's own holdout sample. Held against the figure
    night 1 measured on its own sample (other customers: 50 of about 130 who bought in each holdout), this shop's
    second night scored 4% lower and was refused although nothing about the shop changed."""
    settings = isolated_settings(redis_handle, "gd")
    settings = settings.replace(model={"als": AlsParams(factors=16, iterations=10)}, job={"gate_users": 50})
    events, items = shop.paths
    latest = max(shop.events["timestamp"].to_pylist())
    keys = Keys(settings.redis.key_prefix)
    figures = []
    for as_of in (latest - timedelta(days=1), None):
        cfg = JobConfig(events=events, items=items, settings=settings, gate=True, show_progress=False, as_of=as_of)
        result = run_job(cfg, redis_handle.client)  # raises GateRefused when the gate keeps night 1's version
        figures.append(manifest(redis_handle.client, keys, result.version)["evaluation"])
    first, second = figures
    assert second["fit"] == "warm start, 3 iterations" and second["cutoff"] > first["cutoff"]
    assert "scored on tonight's holdout" in second["decision"]
    # the serving version's figure is tonight's measurement, not the one from its own night
    assert second["current"] != first["candidate"] and abs(second["candidate"] / second["current"] - 1) < 0.02


def test_without_the_serving_fit_the_gate_scores_four_times_the_customers(redis_handle, shop):
    """The paired comparison needs few customers; held against a stored figure of another sample, each customer's
    own spread counts, so the gate scores four times ``gate_users`` (without warm starts no gate fit is kept)."""
    settings = isolated_settings(redis_handle, "gu")
    als = AlsParams(factors=16, iterations=10)
    settings = settings.replace(model={"als": als}, job={"gate_users": 20, "gate_warm_iterations": 0})
    events, items = shop.paths
    latest = max(shop.events["timestamp"].to_pylist())
    keys = Keys(settings.redis.key_prefix)
    figures = []
    for as_of in (latest - timedelta(days=1), None):
        cfg = JobConfig(
            events=events,
            items=items,
            settings=settings,
            gate=True,
            show_progress=False,
            as_of=as_of,
            force_publish=True,
        )
        result = run_job(cfg, redis_handle.client)
        figures.append(manifest(redis_handle.client, keys, result.version)["evaluation"])
    first, second = figures
    assert first["users"] == 20  # a first night: nothing to compare with but recent popularity
    assert second["users"] == 80 and "scored on tonight's holdout" not in second["decision"]


def stored_fit(shop, als: AlsParams) -> tuple[StoredFactors, datetime]:
    """Night 1's gate fit (a day earlier) as the factors kept on disk, and its cutoff."""
    latest = max(shop.events["timestamp"].to_pylist())
    night1 = shop.events.filter(pc.less_equal(shop.events["timestamp"], pa.scalar(latest - timedelta(days=1))))
    kept = {}

    def fit(inter):
        model = fit_from(inter, als, None, als.iterations)
        kept["f"] = StoredFactors(inter.user_ids, inter.item_ids, model.user_factors, model.item_factors, CUT, "s")
        return model

    cutoff = datetime.fromisoformat(holdout_metrics(night1, shop.items, ModelSettings(als=als), fit=fit)["cutoff"])
    kept["f"].cutoff = cutoff
    return kept["f"], cutoff


def test_the_candidate_starts_in_the_serving_models_arrays_and_is_judged_as_from_the_stored_factors(shop, monkeypatch):
    """The serving version is scored first and the candidate's warm fit starts in its model's arrays (one set of
    customer factors at a time): the same start, fit and figures as a fit from the factors kept on disk."""
    monkeypatch.setattr(warm_start, "_BLOCK", 7)  # the random starts drawn over many blocks
    als = AlsParams(factors=16, iterations=10)
    params = ModelSettings(als=als)
    stored, _ = stored_fit(shop, als)
    ctx = holdout_context(shop.events, shop.items, max_users=None)
    # As it was: the stored factors held throughout, the serving model built from them beside the candidate.
    apart, apart_fit, _ = score_holdout(
        ctx,
        params,
        fit=lambda inter: fit_from(inter, als, stored, 3),
        earlier=lambda inter: earlier_model(inter, als, stored),
        reference=False,
    )
    carried, arrays = {}, {}

    def serving(inter):
        carried["c"] = carry_over(inter, als, stored)
        arrays["users"] = carried["c"].model.user_factors
        return carried["c"].model

    handed, handed_fit, _ = score_holdout(
        ctx, params, fit=lambda inter: fit_on(carried["c"], inter, als, 3), earlier=serving, reference=False
    )
    unpaired = score_holdout(ctx, params, fit=lambda inter: fit_from(inter, als, stored, 3), reference=False)[0]
    new_users = int((~carried["c"].known_users).sum())
    assert new_users > 0 and carried["c"].known_users.sum() > 100  # new customers, and known ones
    assert np.shares_memory(handed_fit.model.user_factors, arrays["users"])  # no second set of customer factors
    assert np.array_equal(handed_fit.model.user_factors, apart_fit.model.user_factors)
    assert np.array_equal(handed_fit.model.item_factors, apart_fit.model.item_factors)
    for key in ("candidate", "current", "recent_popularity", "users", "figures"):
        assert handed[key] == apart[key], key
    assert handed["candidate"] == unpaired["candidate"] and handed["figures"] == unpaired["figures"]
    assert handed["current"] != handed["candidate"] and not math.isnan(handed["current"])


def test_the_gate_reads_the_stored_factors_when_needed_and_lets_go_of_them_after_their_last_use(
    shop, tmp_path, monkeypatch
):
    als = AlsParams(factors=16, iterations=10)
    stored, _ = stored_fit(shop, als)
    settings = Settings().replace(redis={"data_dir": tmp_path}, model={"als": als})
    cfg = JobConfig(events=tmp_path / "none", settings=settings)
    keys = Keys("gl")
    ctx = holdout_context(shop.events, shop.items, max_users=None)
    inter = AlsRecommender(als).fit(ctx.split.train).fitted.inter
    expected = fit_from(inter, als, stored, settings.job.gate_warm_iterations)
    loaded = []
    load = StoredFactors.load

    def watched(path, *stamp):
        factors = load(path, *stamp)
        loaded.append(weakref.ref(factors))
        return factors

    monkeypatch.setattr(StoredFactors, "load", watched)
    for paired in (True, False):
        stored.settings = GateWarmStart(cfg.settings, keys.prefix, ctx.split.cutoff).settings
        stored.save(settings.redis.data_dir / "gate" / "gl.npz")
        loaded.clear()
        warm = GateWarmStart(cfg.settings, keys.prefix, ctx.split.cutoff)
        assert warm.warm and warm.how == "warm start, 3 iterations" and warm.earlier == stored.stamp
        assert not loaded  # the stamp only: the factors stay on disk until a fit needs them
        if paired:
            serving = warm.serving(inter)
            gc.collect()
            assert len(loaded) == 1 and loaded[0]() is None  # let go of as soon as the serving model is built
            assert np.array_equal(serving.item_factors, earlier_model(inter, als, stored).item_factors)
        model = warm.fit(inter)
        gc.collect()
        assert len(loaded) == 1 and loaded[0]() is None
        assert np.array_equal(model.user_factors, expected.user_factors)
        assert np.array_equal(model.item_factors, expected.item_factors)
