"""Settings: one object in sections, one precedence (options > tuned settings > environment > defaults)."""

from __future__ import annotations

import pytest

from recommender.config import ListParams, Settings, load_settings
from training.train_cli import OPTION_PATHS

TUNED = {"als": {"factors": 20, "alpha": 0.3}, "weights": {"return": 0.5}, "half_life_days": 30, "repeat_share": 0.7}


def test_options_beat_tuned_settings_beat_the_environment_beat_defaults(monkeypatch):
    monkeypatch.setenv("RECO_FACTORS", "12")
    monkeypatch.setenv("RECO_ITERATIONS", "7")
    monkeypatch.setenv("RECO_HALF_LIFE_DAYS", "90")
    given = load_settings({"model": {"als": {"factors": 5, "regularization": None}}}, TUNED).model
    assert given.als.factors == 5  # option over tuned and environment
    assert given.als.alpha == 0.3 and given.half_life_days == 30  # tuned over environment and default
    assert given.als.iterations == 7  # environment over default
    assert given.als.regularization == 0.05  # None means "not given": the default
    assert given.weights.return_ == 0.5 and given.repeat_share == 0.7  # the file's names mapped to the sections
    assert load_settings(tuned=TUNED).model.als.factors == 20
    assert load_settings().model.als.factors == 12
    monkeypatch.delenv("RECO_FACTORS")
    assert load_settings().model.als.factors == 64


def test_every_existing_environment_name_lands_in_its_section(monkeypatch):
    env = {
        "REDIS_URL": "redis://cache:6379/0",
        "RECO_DATA_DIR": "/srv/reco",
        "RECO_KEY_PREFIX": "shop2",
        "RECO_REDIS_TIMEOUT_SECONDS": "2",
        "RECO_API_KEY": "w",
        "RECO_READ_API_KEY": "r",
        "RECO_MAX_EVENTS_BATCH": "10",
        "RECO_REQUEST_LOG": "all",
        "RECO_MAX_BAD_SHARE": "0.1",
        "RECO_LIVE_ARCHIVE_DIR": "/srv/live",
        "RECO_WEIGHT_VIEW": "2",
        "RECO_WEIGHT_RETURN": "0.25",
        "RECO_LIST_SIZE": "40",
        "RECO_PERSONAL_REPEAT_SHARE": "0.5",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = Settings()
    assert (s.redis.url, str(s.redis.data_dir), s.redis.key_prefix, s.redis.timeout_seconds) == (
        "redis://cache:6379/0",
        "/srv/reco",
        "shop2",
        2.0,
    )
    assert (s.api.api_key, s.api.read_api_key, s.api.max_events_batch, s.api.request_log) == ("w", "r", 10, "all")
    assert s.job.max_bad_share == 0.1 and str(s.live_dir) == "/srv/live"
    assert s.model.weights.view == 2.0 and s.model.weights.return_ == 0.25
    assert s.model.lists.list_size == 40 and s.model.repeat_share == 0.5


def test_an_invalid_value_is_refused_wherever_it_comes_from(monkeypatch):
    with pytest.raises(ValueError, match="factors"):
        load_settings({"model": {"als": {"factors": 0}}})
    with pytest.raises(ValueError, match="repeat_share|personal_repeat_share"):
        load_settings(tuned={"repeat_share": 2})
    monkeypatch.setenv("RECO_MAX_BAD_SHARE", "-1")
    with pytest.raises(ValueError, match="max_bad_share"):
        load_settings()


def test_replace_swaps_values_of_a_section_and_leaves_the_rest():
    s = load_settings({"redis": {"key_prefix": "a"}})
    t = s.replace(model={"lists": ListParams(list_size=3)}, api={"api_key": "k"})
    assert t.model.lists.list_size == 3 and t.api.api_key == "k" and t.redis.key_prefix == "a"
    assert s.model.lists.list_size == 100 and s.api.api_key is None


def test_every_train_option_names_a_setting():
    sections = {name: info.annotation for name, info in Settings.model_fields.items()}
    for option, (section, *path) in OPTION_PATHS.items():
        model = sections[section]
        for part in path[:-1]:
            model = model.model_fields[part].annotation
        assert path[-1] in model.model_fields, option
