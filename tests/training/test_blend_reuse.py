"""The nightly job keeps its learned blend with the version and reuses it while fresh, like its tuned settings."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from factories import isolated_settings
from typer.testing import CliRunner

import recommender.evaluation.blend_learning as blend_learning
import training.blend_step as blend_step
from cache.keys import Keys
from cache.publisher import current_version, manifest
from cache.reader import iter_lists, read_value
from recommender.config import ModelSettings
from recommender.data.demo import generate_shop
from recommender.models.blend_ranker import BlendRanker
from training.blend_step import learnt_with, stale_because
from training.cli import app
from training.job import JobConfig, run_job


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    out = tmp_path_factory.mktemp("grocery")
    generate_shop(n_users=400, n_items=120, n_categories=6, days=120, seed=5, kind="grocery").write(out)
    return out / "events.csv", out / "items.csv"


class Nights:
    """Nightly runs of the job on one shop and one key prefix."""

    def __init__(self, shop, redis_handle) -> None:
        self.events, self.items = shop
        self.client = redis_handle.client
        # full fits every night: two nights on the same events then serve the same lists (a warm start would move
        # the factors a little, tests/training/test_nightly_fit.py)
        settings = isolated_settings(redis_handle, "reuse", gate_days=21, fit_warm_iterations=0)
        # any validation gain serves: how decisive this small shop's gain is moves with the machine's floating point
        self.settings = settings.replace(model={"lists": settings.model.lists.model_copy(update={"blend_min_z": 0.0})})
        self.keys = Keys(self.settings.redis.key_prefix)

    def run(self, lists: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
        """One night (``lists``: list settings to change); the published version's manifest."""
        settings = self.settings
        if lists:
            model = settings.model
            settings = settings.replace(model={"lists": model.lists.model_copy(update=lists)})
        cfg = JobConfig(events=self.events, items=self.items, settings=settings, show_progress=False)
        cfg.tune_candidates = 3
        for name, value in more.items():
            setattr(cfg, name, value)
        result = run_job(cfg, self.client)
        return manifest(self.client, self.keys, result.version)

    def ranker(self, version: str) -> bytes | None:
        return self.client.get(self.keys.key(version, Keys.BLEND_RANKER))

    def served(self, m: dict[str, Any]) -> dict[str, Any]:
        """Every precomputed next-purchase list of a version, and the example customer's personal list."""
        user = m["examples"]["user_id"]
        lists = dict(iter_lists(self.client, self.keys, m["version"], "next"))
        return {"next": lists, "personal": read_value(self.client, self.keys, m["version"], Keys.user(user))}

    def edit_blend(self, **changes: Any) -> None:
        """Change the serving version's ``blend`` block as the next night reads it."""
        version = current_version(self.client, self.keys)[0]
        m = manifest(self.client, self.keys, version)
        m["blend"] |= changes
        self.client.set(self.keys.key(version, Keys.MANIFEST), orjson.dumps(m))


@pytest.fixture(scope="module")
def nights(shop, redis_handle):
    return Nights(shop, redis_handle)


@pytest.fixture(scope="module")
def first_two(nights):
    first = nights.run()
    first_lists, first_ranker = nights.served(first), nights.ranker(first["version"])
    second = nights.run()
    return first, second, first_lists, nights.served(second), first_ranker, nights.ranker(second["version"])


def test_the_first_night_learns_and_keeps_the_ranker_with_the_version(first_two) -> None:
    first, _, _, _, stored, _ = first_two
    blend = first["blend"]
    assert blend["reused"] is False and blend["learnt_because"] == "the serving version has no learned blend"
    assert blend["chosen"] and first["counts"]["blended_lists"] > 300  # this repeat-heavy shop serves the blend
    assert sum(blend["seconds"].values()) > 0 and blend["learnt_with"]["gate_days"] == 21
    ranker = BlendRanker.from_bytes(stored, blend["importance"])
    assert ranker.importance == blend["importance"] and ranker.booster.num_trees() > 0


def test_the_next_night_reuses_ranker_and_decision(first_two) -> None:
    first, second, first_lists, second_lists, first_ranker, second_ranker = first_two
    blend = second["blend"]
    assert blend["reused"] is True and blend["reused_from"] == first["version"]
    assert "seconds" not in blend and "learnt_because" not in blend  # nothing was learned tonight
    for key in ("learnt_at", "chosen", "decision", "validation", "importance", "ranker_sha256"):
        assert blend[key] == first["blend"][key], key
    # the version keeps the same ranker, and the lists it serves are built with it: the same as the first night's
    assert second_ranker == first_ranker
    assert second["counts"]["blended_lists"] == first["counts"]["blended_lists"]
    # the co-purchase neighbours the first night computed are reused with its ranker (training/blend_neighbours.py)
    assert first["blend"]["neighbours"] == "computed tonight"
    assert second["blend"]["neighbours"] == f"kept from the night of {first['as_of']}"
    assert len(second_lists["next"]) > 300 and second_lists == first_lists


def test_a_damaged_or_missing_ranker_is_learned_again(nights, first_two) -> None:
    base = nights.run()
    raw = nights.ranker(base["version"])
    # half a model string: LightGBM would abort the process reading it; the checksum keeps it from LightGBM
    nights.client.set(nights.keys.key(base["version"], Keys.BLEND_RANKER), raw[: len(raw) // 2])
    damaged = nights.run()
    assert damaged["blend"]["reused"] is False and "does not match its checksum" in damaged["blend"]["learnt_because"]
    assert damaged["blend"]["chosen"] and damaged["counts"]["blended_lists"] > 300
    nights.client.delete(nights.keys.key(damaged["version"], Keys.BLEND_RANKER))
    missing = nights.run()
    assert missing["blend"]["reused"] is False and "is missing" in missing["blend"]["learnt_because"]
    assert nights.ranker(missing["version"]) is not None


def test_an_aged_ranker_is_learned_again(nights, first_two) -> None:
    nights.run()
    nights.edit_blend(learnt_at=(datetime.now(timezone.utc) - timedelta(days=8)).isoformat(timespec="seconds"))
    aged = nights.run()
    assert aged["blend"]["reused"] is False and aged["blend"]["learnt_because"].startswith("it was 8.0 days old")
    stricter = nights.run(lists={"blend_max_age_days": 0})
    assert stricter["blend"]["reused"] is False and "days old" in stricter["blend"]["learnt_because"]


def test_a_re_tune_learns_again_and_a_reused_tune_reuses(nights, first_two) -> None:
    tuned = nights.run(self_tune=True, tune_max_age_days=0)
    assert tuned["tuned"]["reused"] is False
    assert tuned["blend"]["reused"] is False and tuned["blend"]["learnt_because"] == "the night re-tuned its settings"
    again = nights.run(self_tune=True)
    assert again["tuned"]["reused"] is True and again["blend"]["reused"] is True


def test_a_changed_model_setting_learns_again_a_list_setting_does_not(nights, first_two) -> None:
    base = nights.run()
    other_lists = nights.run(lists={"blend_days": 30, "bestseller_days": 14})
    assert other_lists["blend"]["reused"] is True and other_lists["blend"]["reused_from"] == base["version"]
    horizon = nights.run(lists={"next_purchase_horizon_days": 20})
    assert horizon["blend"]["reused"] is False
    assert horizon["blend"]["learnt_because"] == "the model settings changed since it was learned"


def test_a_reused_policy_decision_builds_no_candidates(nights, first_two, monkeypatch) -> None:
    nights.run()
    nights.edit_blend(chosen=False, decision="the policy serves (the blend did not beat it on validation)")

    def no_candidates(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("candidates were built")

    monkeypatch.setattr(blend_step, "CandidateSources", no_candidates)
    monkeypatch.setattr(blend_learning, "CandidateSources", no_candidates)
    policy = nights.run()
    assert policy["blend"]["reused"] is True and policy["blend"]["chosen"] is False
    assert policy["counts"]["blended_lists"] == 0 and nights.ranker(policy["version"]) is None
    assert nights.served(policy)["next"]  # the policy's next-purchase lists are served


def test_status_and_the_summary_say_whether_the_blend_was_reused(shop, redis_handle) -> None:
    runner = CliRunner()
    env = {
        "RECO_KEY_PREFIX": f"brs{uuid.uuid4().hex[:8]}",
        "RECO_DATA_DIR": str(redis_handle.data_dir or "var"),
        "RECO_BLEND_MIN_Z": "0",  # any gain serves, as in Nights
    }
    if redis_handle.url:
        env["REDIS_URL"] = redis_handle.url
    events, items = shop
    args = ["train", "--events", str(events), "--items", str(items), "--no-progress", "--gate-days", "21"]
    first = runner.invoke(app, [*args, "--no-self-tune"], env=env)
    assert first.exit_code == 0 and "learned in" in first.output, first.output
    again = runner.invoke(app, [*args, "--no-self-tune"], env={**env, "RECO_BLEND_MAX_AGE_DAYS": "3"})
    assert again.exit_code == 0 and "reused from" in again.output, again.output
    status = runner.invoke(app, ["status"], env=env)
    assert status.exit_code == 0 and "learned blend: the blend serves" in status.output, status.output
    stale = runner.invoke(app, [*args, "--no-self-tune"], env={**env, "RECO_BLEND_MAX_AGE_DAYS": "0"})
    assert stale.exit_code == 0 and "days old" in stale.output, stale.output


def test_why_a_night_learns_again() -> None:
    now = datetime(2026, 7, 1, tzinfo=timezone.utc)
    settings = learnt_with(ModelSettings(), 30)
    block = {"chosen": True, "learnt_at": (now - timedelta(days=6)).isoformat(), "learnt_with": settings}
    assert stale_because(block, None, settings, now, 7) is None
    assert stale_because(block, {"reused": True}, settings, now, 7) is None
    assert stale_because(block, {"skipped": "short log"}, settings, now, 7) is None
    assert stale_because(block, None, settings, now, 5) == "it was 6.0 days old (the age limit is 5 days)"
    assert stale_because(block, {"reused": False}, settings, now, 7) == "the night re-tuned its settings"
    assert "settings changed" in stale_because(block, None, {**settings, "gate_days": 14}, now, 7)
    assert "no learned blend" in stale_because({"skipped": "off"}, None, settings, now, 7)
    assert "no learned blend" in stale_because(None, None, settings, now, 7)
    assert "unreadable" in stale_because({**block, "learnt_at": "yesterday"}, None, settings, now, 7)
    assert "after now" in stale_because({**block, "learnt_at": "2026-07-02T00:00:00"}, None, settings, now, 7)


def test_a_stored_ranker_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="not a LightGBM model"):
        BlendRanker.from_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a LightGBM model"):
        BlendRanker.from_bytes(b"\xff\xfe")
