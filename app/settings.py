"""One settings model for the window's settings page, the command line and the server (shared/STYLE.md).

Stored as JSON in the user's data folder, with a schema version: a renamed field gets a migration.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from basics.errors import LanternError
from engine.engine import EngineOptions
from engine.sampling import SamplingParams
from files.owned_files import atomic_write, move_aside
from machine.helpers import HelperError, parse_endpoint
from models.library import data_dir
from models.registry import STARTER_MODEL
from runtimes.runtime import LoadOptions

SCHEMA_VERSION = 2  # 2: presets and per-model defaults (an older Lantern refuses the file instead of misreading it)


class SettingsError(LanternError):
    pass


SEED_MAX = 2 ** 31 - 1
Effort = Literal["low", "medium", "high"]
# At most 8 stop strings of up to 200 characters: longer ones are refused, never cut
ToolChoice = Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=512)]
StopStrings = Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=8)]


def _helper(value: str) -> str:
    try:
        return parse_endpoint(value)
    except HelperError as e:
        raise ValueError(str(e)) from None


# Helper machines as "host:port" (`lantern worker` on each), checked as llama.cpp takes them
Helpers = Annotated[list[Annotated[str, Field(max_length=300), AfterValidator(_helper)]], Field(max_length=16)]


class ChatSettings(BaseModel):
    """What one chat (or a preset, or a model's defaults) sets for itself; None: the next level decides
    (chat, then the model's defaults, then the global settings)."""
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    system_prompt: str | None = Field(None, max_length=100_000)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0, lt=1)
    repeat_penalty: float | None = Field(None, gt=0, le=10)
    max_tokens: int | None = Field(None, ge=1)
    overflow: Literal["drop_oldest", "refuse"] | None = None  # a chat past its context: lose the oldest turns, or not
    seed: int | None = Field(None, ge=0, le=SEED_MAX)  # the same seed and settings give the same reply
    stop: StopStrings | None = None  # the reply ends before any of these
    thinking: bool | None = None  # for models that can answer without thinking first
    reasoning_effort: Effort | None = None  # for models that take one (gpt-oss)
    # the tools the chat offers the model (app/tools/): ["*"] all that are on, [] none, or "server/tool" names
    tools: ToolChoice | None = None
    tool_rounds: int | None = Field(None, ge=1, le=50)  # the agent loop's rounds at most
    preset: str | None = Field(None, max_length=60)  # the preset these came from, if any

    def overrides(self) -> dict:
        per_model = {"preset", "name", "n_ctx", "chat_template", "draft_model", "mtp"}  # load settings, not a chat's
        return {k: v for k, v in self.model_dump(exclude=per_model).items() if v is not None}


class ModelDefaults(ChatSettings):
    n_ctx: int | None = Field(None, ge=0, le=1 << 20)
    # a Jinja chat template used instead of the model's own (a fixed or simpler one); checked when it is saved
    chat_template: str | None = Field(None, max_length=500_000)
    # a smaller model of the library, with the same vocabulary, that drafts tokens for this one (models/drafts.py)
    draft_model: str | None = Field(None, min_length=1, max_length=200)
    # its own multi-token-prediction heads, where it has them (runtimes/llama_mtp.py); None: auto
    mtp: Literal["auto", "on", "off"] | None = None


class Preset(ChatSettings):
    name: str = Field(min_length=1, max_length=60)


BUILTIN_PRESETS = (
    Preset(name="Balanced", temperature=0.7, top_p=0.95, min_p=0.05),
    Preset(name="Precise", temperature=0.2, top_p=0.9, min_p=0.05),
    Preset(name="Creative", temperature=1.0, top_p=0.98, min_p=0.02),
    Preset(name="Coder", temperature=0.2, system_prompt="You are an expert programmer. Answer with correct, "
           "complete code and short explanations; say when you are unsure."),
    Preset(name="Concise", temperature=0.5, system_prompt="Answer briefly and directly, in a few sentences."),
)


FLASH_ATTN = {"auto": None, "on": True, "off": False}


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    schema_version: int = SCHEMA_VERSION
    model: str = STARTER_MODEL
    backend: Literal["auto", "llamacpp", "mlx", "remote"] = "auto"
    remote_url: str | None = None
    remote_key: str | None = Field(None, max_length=4096)  # the remote server's API key (vLLM's --api-key...)
    n_ctx: int = Field(4096, ge=0, le=1 << 20)
    n_gpu_layers: int | None = Field(None, ge=-1)  # None: as many as fit
    # conversations computed at once (the window's chat and the endpoint's clients): 0 is 4 where the model can
    # batch them (llama.cpp; not MLX, recurrent or embedding models), else 1 (app/wiring.py)
    slots: int = Field(0, ge=0, le=64)
    # the KV cache's type (llama.cpp): q8_0 about halves its memory, q4_0 about quarters it (both turn flash
    # attention on); flash attention: auto is off on the CPU (slower there at depth) and llama.cpp's choice on a GPU
    kv_cache_type: Literal["f16", "q8_0", "q4_0"] = "f16"
    flash_attn: Literal["auto", "on", "off"] = "auto"
    threads: int | None = Field(None, ge=1, le=512)  # None: Lantern picks (and follows how busy the cores are)
    batch_size: int = Field(512, ge=1, le=65536)  # prompt tokens computed per step (more: faster reading, more memory)
    system_prompt: str = ""
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    top_k: int = Field(40, ge=0)
    min_p: float = Field(0.05, ge=0, lt=1)
    repeat_penalty: float = Field(1.0, gt=0, le=10)
    max_tokens: int = Field(512, ge=1)
    overflow: Literal["drop_oldest", "refuse"] = "drop_oldest"
    seed: int | None = Field(None, ge=0, le=SEED_MAX)  # None: a new one for every reply
    stop: StopStrings = Field(default_factory=list)
    thinking: bool = True
    reasoning_effort: Effort = "medium"
    prompt_lookup: bool = True
    draft_max: int = Field(16, ge=1, le=64)
    tools: ToolChoice = Field(default_factory=lambda: ["*"])  # what a chat offers unless it chooses: all that are on
    tool_rounds: int = Field(8, ge=1, le=50)
    builtin_tools: list[Literal["list_files", "read_file", "search_documents", "calculate"]] = Field(
        default_factory=list)  # Lantern's own tools the user turned on (each off by default)
    tools_folder: str = Field("", max_length=4096)  # the one folder the file tools may read
    theme: Literal["system", "light", "dark"] = "system"
    # used for a model this machine cannot hold alone (models/spread.py); --rpc uses its own for every model
    helpers: Helpers = Field(default_factory=list)
    server_host: str = "127.0.0.1"
    server_port: int = Field(8000, ge=0, le=65535)
    server_api_key: str | None = None
    presets: list[Preset] = Field(default_factory=list)  # the user's own; a name shadows a built-in one
    model_defaults: dict[str, ModelDefaults] = Field(default_factory=dict)  # by model name: what its chats start from

    def all_presets(self) -> list[Preset]:
        mine = {p.name.casefold() for p in self.presets}
        return [*self.presets, *(p for p in BUILTIN_PRESETS if p.name.casefold() not in mine)]

    def preset(self, name: str) -> Preset:
        found = next((p for p in self.all_presets() if p.name.casefold() == name.casefold()), None)
        if found is None:
            raise SettingsError(f"There is no preset {name[:60]!r}; there are "
                                f"{', '.join(p.name for p in self.all_presets())}.")
        return found

    def for_chat(self, model: str, chat: ChatSettings | None = None) -> "Settings":
        """The settings a chat with `model` runs with: these, then the model's defaults, then the chat's own."""
        defaults = self.model_defaults.get(model)
        changes = {**(defaults.overrides() if defaults else {}), **(chat.overrides() if chat else {})}
        if defaults and defaults.n_ctx is not None:
            changes["n_ctx"] = defaults.n_ctx
        return self.model_copy(update=changes) if changes else self

    def sampling(self, seed: int | None = None) -> SamplingParams:
        """`seed`: this one, else the settings' own (None: a new one each time)."""
        return SamplingParams(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, min_p=self.min_p,
                              repeat_penalty=self.repeat_penalty, seed=self.seed if seed is None else seed)

    def template_options(self) -> dict:
        """What the chat template is told: think or not, and how hard (templates that do not ask ignore them)."""
        return {"enable_thinking": self.thinking, "reasoning_effort": self.reasoning_effort}

    def load_options(self, model: str | None = None) -> LoadOptions:
        """For `model`: with the draft model and the MTP choice its defaults hold, if any."""
        defaults = self.model_defaults.get(model) if model else None
        return LoadOptions(n_ctx=self.n_ctx, n_gpu_layers=self.n_gpu_layers, slots=self.slots, n_threads=self.threads,
                           n_batch=self.batch_size, kv_cache_type=self.kv_cache_type,
                           flash_attn=FLASH_ATTN[self.flash_attn],
                           draft_model=defaults.draft_model if defaults else None,
                           mtp=defaults.mtp or "auto" if defaults else "auto",
                           helpers=tuple(dict.fromkeys(self.helpers)), helpers_when_needed=True)

    def engine_options(self, model: str | None = None) -> EngineOptions:
        """For `model`: with the chat template its defaults set instead of its own, if any."""
        defaults = self.model_defaults.get(model) if model else None
        return EngineOptions(prompt_lookup=self.prompt_lookup, draft_max=self.draft_max,
                             chat_template=defaults.chat_template if defaults else None)


# Old field names -> new ones, by the version that renamed them.
_RENAMES: dict[int, dict[str, str]] = {}


def migrate(data: dict) -> dict:
    version = data.get("schema_version", 1)
    if type(version) is not int or version < 1:
        raise SettingsError(f"schema_version is {str(version)[:40]!r}, not a version number")
    if version > SCHEMA_VERSION:
        raise SettingsError(f"These settings were written by a newer Lantern (schema {version}); "
                            f"this one reads up to {SCHEMA_VERSION}.")
    for v in range(version + 1, SCHEMA_VERSION + 1):
        for old, new in _RENAMES.get(v, {}).items():
            if old in data:
                data[new] = data.pop(old)
    data["schema_version"] = SCHEMA_VERSION
    return data


def load_settings(path: Path) -> Settings:
    """The saved settings, or the defaults when there are none. A damaged file is moved aside (kept, never
    deleted), the user is told once, and the defaults are used; an unreadable one (permissions) is an error."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Settings()
    except OSError as e:
        raise SettingsError(f"The settings file {path} cannot be read: {e.strerror or e}") from None
    try:
        return parse_settings(data)
    except SettingsError as e:
        move_aside(path, str(e))
        return Settings()


def parse_settings(data: bytes) -> Settings:
    try:
        raw = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise SettingsError(f"not JSON: {str(e)[:100]}") from None
    if not isinstance(raw, dict):
        raise SettingsError("not a JSON object")
    try:
        return Settings(**migrate(raw))
    except (ValidationError, TypeError, ValueError, RecursionError) as e:
        if isinstance(e, ValidationError) and e.errors():
            first = e.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise SettingsError(f"a bad value for {where}: {first.get('msg')}") from None
        raise SettingsError(str(e)[:200]) from None


def save_settings(path: Path, settings: Settings) -> None:
    atomic_write(path, settings.model_dump_json(indent=2))  # the old settings or the new ones, never half


def settings_path() -> Path:
    return data_dir() / "settings.json"


class SettingsFile:
    """The settings in use and the file they are saved to: every change is validated, then saved at once."""

    def __init__(self, path: Path, settings: Settings | None = None):
        self.path = path
        self.current = settings if settings is not None else load_settings(path)

    def update(self, **changes) -> Settings:
        """Raises pydantic's ValidationError for a bad value (nothing saved) or OSError when saving fails."""
        new = Settings.model_validate({**self.current.model_dump(), **changes})
        save_settings(self.path, new)
        self.current = new
        return new
