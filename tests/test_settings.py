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


def test_presets_model_defaults_and_a_chats_own_settings_stack_in_that_order(tmp_path):
    import pytest
    from pydantic import ValidationError

    from app.settings import ChatSettings, ModelDefaults, Preset, Settings, SettingsError, SettingsFile

    s = Settings(temperature=0.7, top_k=40, system_prompt="global",
                 presets=[Preset(name="precise", temperature=0.05)],  # the user's own shadows the built-in one
                 model_defaults={"smol": ModelDefaults(top_k=5, n_ctx=1024, system_prompt="smol's")})
    assert s.preset("PRECISE").temperature == 0.05 and s.preset("Coder").temperature == 0.2
    assert [p.name for p in s.all_presets()].count("Precise") == 0
    with pytest.raises(SettingsError, match="no preset 'nope'; there are precise, Balanced"):
        s.preset("nope")
    mine = s.for_chat("smol", ChatSettings(temperature=1.1, system_prompt=""))
    assert (mine.temperature, mine.top_k, mine.n_ctx, mine.system_prompt) == (1.1, 5, 1024, "")
    other = s.for_chat("other")
    assert (other.temperature, other.top_k, other.n_ctx, other.system_prompt) == (0.7, 40, 4096, "global")
    with pytest.raises(ValidationError):
        ChatSettings(temperature=3)
    file = SettingsFile(tmp_path / "settings.json", s)
    file.update(model_defaults={**s.model_defaults, "gemma": ModelDefaults(temperature=0.3)})
    again = SettingsFile(tmp_path / "settings.json")
    assert again.current.model_defaults["gemma"].temperature == 0.3 and again.current.presets[0].name == "precise"
    # a model's own chat template goes to its engine only, never into a chat's sampling
    templated = Settings(model_defaults={"smol": ModelDefaults(chat_template="{{ messages }}")})
    assert templated.engine_options("smol").chat_template == "{{ messages }}"
    assert templated.engine_options("other").chat_template is None and templated.engine_options().chat_template is None
    assert templated.for_chat("smol").model_dump() == Settings(model_defaults=templated.model_defaults).model_dump()
