"""The one settings model: defaults, round trip, validation, migrations, and what it feeds."""
from __future__ import annotations

import json

import pytest

from app import settings as settings_module
from app.settings import Settings, SettingsError, load_settings, migrate, save_settings


def test_defaults_round_trip_and_feed_the_engine(tmp_path):
    path = tmp_path / "settings.json"
    assert load_settings(path) == Settings()
    s = Settings(temperature=0.2, n_ctx=8192, prompt_lookup=False, draft_max=8, theme="dark", n_gpu_layers=-1)
    save_settings(path, s)
    again = load_settings(path)
    assert again == s
    assert again.sampling(seed=3).temperature == 0.2 and again.sampling(seed=3).seed == 3
    assert again.load_options().n_ctx == 8192 and again.load_options().n_gpu_layers == -1
    assert again.engine_options().prompt_lookup is False and again.engine_options().draft_max == 8
    assert not list(tmp_path.glob(".settings.*"))  # no temporary file left behind


def test_bad_files_and_values_are_errors_not_silent_resets(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text("{not json")
    with pytest.raises(SettingsError, match="cannot be read"):
        load_settings(path)
    path.write_text(json.dumps({"temperature": 9}))
    with pytest.raises(SettingsError, match="temperature"):
        load_settings(path)
    path.write_text(json.dumps({"tempreature": 0.5}))
    with pytest.raises(SettingsError, match="tempreature"):
        load_settings(path)
    path.write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(SettingsError, match="newer Lantern"):
        load_settings(path)
    with pytest.raises(ValueError):
        Settings().theme = "neon"


def test_a_renamed_field_is_migrated(monkeypatch):
    monkeypatch.setattr(settings_module, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(settings_module._RENAMES, 2, {"lookup": "prompt_lookup"})
    assert migrate({"schema_version": 1, "lookup": False}) == {"schema_version": 2, "prompt_lookup": False}
