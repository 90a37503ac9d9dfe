"""The one settings model: defaults, round trip, validation, migrations, and what it feeds."""
from __future__ import annotations

import json

import pytest

from app import settings as settings_module
from app.settings import Settings, SettingsError, load_settings, migrate, parse_settings, save_settings


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


def test_bad_files_and_values_are_named_errors():
    # (load_settings moves such a file aside and starts with the defaults: tests/test_owned_files.py)
    with pytest.raises(SettingsError, match="not JSON"):
        parse_settings(b"{not json")
    with pytest.raises(SettingsError, match="temperature"):
        parse_settings(json.dumps({"temperature": 9}).encode())
    with pytest.raises(SettingsError, match="tempreature"):
        parse_settings(json.dumps({"tempreature": 0.5}).encode())
    with pytest.raises(SettingsError, match="newer Lantern"):
        parse_settings(json.dumps({"schema_version": 99}).encode())
    with pytest.raises(ValueError):
        Settings().theme = "neon"


def test_a_renamed_field_is_migrated(monkeypatch):
    monkeypatch.setattr(settings_module, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(settings_module._RENAMES, 2, {"lookup": "prompt_lookup"})
    assert migrate({"schema_version": 1, "lookup": False}) == {"schema_version": 2, "prompt_lookup": False}
