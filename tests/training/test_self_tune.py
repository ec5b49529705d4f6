"""The job tunes itself: a bounded search on a validation window before the judged one, reused while fresh."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from factories import isolated_settings
from typer.testing import CliRunner

from cache.keys import Keys
from cache.publisher import manifest
from recommender.config import AlsParams, ModelSettings
from recommender.data.demo import generate_shop
from recommender.evaluation.self_tuning import MIN_GAIN_Z, _Fitter, _shortened, is_fresh, rung_shares, search
from recommender.evaluation.tuning import validation_setup
from training.cli import app
from training.job import JobConfig, run_job
from training.self_tune import describe, share_was_tuned


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    shop = generate_shop(n_users=300, n_items=100, n_categories=6, days=120, seed=8)
    shop.paths = shop.write(tmp_path_factory.mktemp("shop"))
    return shop


def test_freshness() -> None:
    now = datetime(2026, 7, 1, tzinfo=timezone.utc)
    block = {"settings": {"als": {}}, "tuned_at": (now - timedelta(days=6)).isoformat()}
    assert is_fresh(block, now, 7) and not is_fresh(block, now, 5)
    assert not is_fresh(None, now, 7) and not is_fresh({"tuned_at": now.isoformat()}, now, 7)
    assert not is_fresh({"settings": {}, "tuned_at": "yesterday"}, now, 7)


def test_successive_halving_never_sees_the_judged_window(shop) -> None:
    warm = ModelSettings(als=AlsParams(factors=8, regularization=0.5, alpha=0.3, iterations=9))
    found = search(shop.events, shop.items, warm=warm, test_days=21, candidates=6, eta=3)
    v = found["validation"]
    assert v["end"] <= v["judged_from"] and v["cutoff"] < v["judged_from"]
    first, second = found["rungs"]
    assert len(first["trials"]) == 6 and len(second["trials"]) == 2 and first["iterations_share"] < 1
    # the warm start is a candidate of the first rung; the second rung holds the best of the first
    assert any(t["als"]["factors"] == 8 and t["als"]["regularization"] == 0.5 for t in first["trials"])
    best_first = sorted(first["trials"], key=lambda t: -t["als_new_ndcg@10"])[:2]
    assert sorted(str(t["als"]) for t in best_first) == sorted(str(t["als"]) for t in second["trials"])
    chosen = found["settings"]
    top = max(second["trials"], key=lambda t: t["als_new_ndcg@10"])
    incumbent = found["incumbent"]  # the warm start: the race's winner replaces it only when clearly better
    if incumbent is None:  # the warm start won the race
        assert top["als"]["factors"] == 8 and top["als"]["regularization"] == 0.5
    else:
        assert incumbent["settings"]["als"]["factors"] == 8 and incumbent["settings"]["als"]["regularization"] == 0.5
        gain = incumbent["winner_gain"]
        assert incumbent["kept"] == (not (gain["mean"] > 0 and gain["z"] >= MIN_GAIN_Z))
        top = incumbent["settings"] if incumbent["kept"] else top
    assert {k: chosen["als"][k] for k in top["als"] if k != "random_state"} == {
        k: v for k, v in top["als"].items() if k != "random_state"
    }
    assert 0 <= chosen["repeat_share"] <= 1 and found["warm_start"] and not found["stopped_early"]
    share = found["repeat_share_choice"]  # another share than the incumbent's only when clearly better
    assert share["incumbent"] == warm.repeat_share
    if share["best"] == share["incumbent"]:
        assert chosen["repeat_share"] == share["incumbent"] and "gain" not in share
    else:
        clear = share["gain"]["mean"] > 0 and share["gain"]["z"] >= MIN_GAIN_Z
        assert share["kept"] == (not clear)
        assert chosen["repeat_share"] == (share["incumbent"] if share["kept"] else share["best"])


def test_a_clearly_better_winner_replaces_a_poor_incumbent(shop) -> None:
    poor = ModelSettings(als=AlsParams(factors=2, regularization=1000.0, alpha=0.01, iterations=1))
    found = search(shop.events, shop.items, warm=poor, test_days=21, candidates=6, eta=3)
    incumbent = found["incumbent"]
    assert incumbent is not None and incumbent["settings"]["als"]["factors"] == 2
    assert incumbent["winner_gain"]["z"] >= MIN_GAIN_Z and not incumbent["kept"]
    assert found["settings"]["als"]["factors"] != 2


def test_a_clearly_better_repeat_share_replaces_the_incumbents(shop) -> None:
    never_again = ModelSettings().with_repeat_share(0.0)  # no slot for an item bought before: poor on a repeat shop
    found = search(shop.events, shop.items, warm=never_again, test_days=21, candidates=3, eta=3)
    share = found["repeat_share_choice"]
    assert share["incumbent"] == 0.0 and share["best"] > 0.0
    assert share["gain"]["z"] >= MIN_GAIN_Z and not share["kept"]
    assert found["settings"]["repeat_share"] == share["best"]


def test_nine_candidates_race_a_ninth_then_a_third_of_their_iterations(shop) -> None:
    assert rung_shares(9, 3) == (1 / 9, 1 / 3, 1.0) and rung_shares(8, 3) == (1 / 3, 1.0)
    assert rung_shares(2, 3) == (1.0,) and rung_shares(27, 3)[0] == 1 / 27
    found = search(shop.events, shop.items, test_days=21, candidates=9, eta=3)
    rungs = found["rungs"]
    assert [len(r["trials"]) for r in rungs] == [9, 3]  # the last rung would hold one candidate: not run
    assert [r["iterations_share"] for r in rungs] == [round(1 / 9, 4), round(1 / 3, 4)]
    for before, after in zip(rungs, rungs[1:]):
        best = sorted(before["trials"], key=lambda t: -t["als_new_ndcg@10"])[: len(after["trials"])]
        assert sorted(str(t["als"]) for t in best) == sorted(str(t["als"]) for t in after["trials"])
    winner = max(rungs[-1]["trials"], key=lambda t: t["als_new_ndcg@10"])
    incumbent = found["incumbent"]
    if incumbent is not None and incumbent["kept"]:  # the winner was not clearly better than the defaults
        assert found["settings"]["als"] == incumbent["settings"]["als"]
    else:
        assert {k: found["settings"]["als"][k] for k in winner["als"]} == winner["als"]
        assert found["best"]["als_new_ndcg@10"] == winner["als_new_ndcg@10"]


def test_a_time_budget_stops_the_search(shop) -> None:
    found = search(shop.events, shop.items, test_days=21, candidates=6, budget_seconds=1e-9)
    assert found["stopped_early"] and len(found["rungs"]) == 1 and len(found["rungs"][0]["trials"]) == 1
    assert found["settings"]["als"]["factors"] == ModelSettings().als.factors  # the defaults came first


def test_the_job_searches_then_reuses_then_searches_again_when_stale(shop, redis_handle) -> None:
    settings = isolated_settings(redis_handle, "tune", gate_days=21)
    keys = Keys(settings.redis.key_prefix)
    events, items = shop.paths

    def night(**more) -> dict:
        cfg = JobConfig(events=events, items=items, settings=settings, self_tune=True, show_progress=False)
        cfg.tune_candidates = 3
        for name, value in more.items():
            setattr(cfg, name, value)
        result = run_job(cfg, redis_handle.client)
        return manifest(redis_handle.client, keys, result.version)

    first = night()
    assert first["tuned"]["reused"] is False and len(first["tuned"]["rungs"][0]["trials"]) == 3
    assert first["params"]["als"] | first["tuned"]["settings"]["als"] == first["params"]["als"]
    assert first["params"]["lists"]["personal_repeat_share"] == first["tuned"]["settings"]["repeat_share"]
    second = night()
    assert second["tuned"]["reused"] is True and second["tuned"]["tuned_at"] == first["tuned"]["tuned_at"]
    assert second["params"]["als"] == first["params"]["als"]
    third = night(tune_max_age_days=0)
    assert third["tuned"]["reused"] is False and third["tuned"]["warm_start"] is True
    seven = settings.replace(model={"als": AlsParams(factors=7)})
    pinned = night(tune_max_age_days=0, settings=seven, pinned=frozenset({"factors"}))
    assert pinned["params"]["als"]["factors"] == 7
    assert "rule" not in pinned["blend"].get("skipped", "")  # a share self-tuning chose never keeps the policy
    half = settings.replace(model={"lists": settings.model.lists.model_copy(update={"personal_repeat_share": 0.5})})
    ruled = night(settings=half, pinned=frozenset({"repeat_share"}))  # the operator's share is a rule
    assert ruled["params"]["lists"]["personal_repeat_share"] == 0.5 and "rule" in ruled["blend"]["skipped"]


def test_only_a_share_self_tuning_chose_counts_as_tuned(shop) -> None:
    events, items = shop.paths
    cfg = JobConfig(events=events, items=items, self_tune=True)
    searched = {"settings": {"repeat_share": 0.8}}
    assert share_was_tuned(cfg, searched)
    assert not share_was_tuned(replace(cfg, pinned=frozenset({"repeat_share"})), searched)
    assert not share_was_tuned(cfg, {"skipped": "short log"}) and not share_was_tuned(cfg, None)


def test_train_tunes_itself_without_a_settings_file_and_status_shows_it(shop, redis_handle, tmp_path) -> None:
    runner = CliRunner()
    env = {"RECO_KEY_PREFIX": f"st{uuid.uuid4().hex[:8]}", "RECO_DATA_DIR": str(redis_handle.data_dir or "var")}
    if redis_handle.url:
        env["REDIS_URL"] = redis_handle.url
    events, items = shop.paths
    args = ["train", "--events", str(events), "--items", str(items), "--no-progress", "--gate-days", "21"]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    assert "searched in" in result.output
    status = runner.invoke(app, ["status"], env=env)
    assert status.exit_code == 0 and "settings: tuned" in status.output, status.output
    listed = runner.invoke(app, ["status", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    manifests = json.loads(listed.output)
    assert manifests["previous"] is None and manifests["current"]["tuned"]["settings"]["als"]["factors"] > 0
    assert manifests["current"]["version"] in status.output
    again = runner.invoke(app, args, env=env)
    assert again.exit_code == 0 and "(reused)" in again.output, again.output
    settings_file = tmp_path / "s.json"
    settings_file.write_text('{"settings": {"als": {"factors": 12}}}')
    pinned = runner.invoke(app, [*args, "--settings", str(settings_file), "--force-publish"], env=env)
    assert pinned.exit_code == 0 and "using tuned settings" in pinned.output and "searched in" not in pinned.output


def test_a_survivor_carried_on_is_the_fit_from_scratch(shop) -> None:
    """The second rung carries the first rung's fits on instead of fitting again: the same factors."""
    ctx = validation_setup(shop.events, shop.items, 21).ctx
    params = ModelSettings(als=AlsParams(factors=8, iterations=9))
    fitter = _Fitter(ctx)
    carried = fitter.resume(fitter.fit(_shortened(params, 1 / 3)), params).fitted.model
    scratch = fitter.fit(params).fitted.model
    assert carried.iterations == scratch.iterations == 9
    assert np.allclose(carried.user_factors, scratch.user_factors, atol=1e-5)
    assert np.allclose(carried.item_factors, scratch.item_factors, atol=1e-5)


def test_status_says_when_the_search_kept_its_incumbent() -> None:
    block = {
        "tuned_at": "2026-12-01T00:00:00+00:00",
        "seconds": 3.0,
        "settings": {"als": {"factors": 64, "regularization": 0.05, "alpha": 1.0, "iterations": 15}},
        "incumbent": {"settings": {}, "winner_gain": {"mean": 0.01, "stderr": 0.007, "z": 1.5}, "kept": True},
    }
    assert describe(block).endswith("(kept: the search's winner was not clearly better, z 1.5)")
    block["incumbent"]["kept"] = False
    assert "kept" not in describe(block) and "factors=64" in describe(block)
