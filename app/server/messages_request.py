"""A Messages API request, and its blocks as the engine's chat messages (app.server.messages serves it)."""
from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from app.server.request_parts import FunctionDef, RequestModel, StrictModel, ToolDef, UnsupportedField, response_schema
from app.server.tool_checks import check_tools
from engine.events import GenerationRequest
from engine.sampling import SamplingParams

IGNORED_BLOCK_FIELDS = {"cache_control", "citations"}  # prompt-caching hints: Lantern reuses every prefix anyway
# Fields the Anthropic API defines on a block that change nothing here, accepted as given (null or a value) so that
# an agent can send back a block as the SDK dumps it (issue 32: anthropic 2.17's tool_use has `caller` and
# `toolset_name`). tests/test_messages_api.py checks this table against the installed SDK's block types.
DEFINED_UNUSED_FIELDS = {
    "tool_use": {"caller", "toolset_name"},  # who made the call (a direct call here) and its MCP toolset
    "tool_result": {"toolset_name"},
    "image": {"transformations"},
}


class AnthropicTool(StrictModel):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None
    cache_control: dict[str, Any] | None = None


class ThinkingConfig(StrictModel):
    type: Literal["enabled", "disabled", "adaptive", "between_tools"]
    budget_tokens: int | None = Field(None, ge=1)
    display: Literal["summarized", "omitted"] | None = None  # omitted: thinking blocks come back empty


class OutputFormat(StrictModel):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(StrictModel):
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: OutputFormat | None = None


class Metadata(StrictModel):
    user_id: str | None = None  # an end-user id: it changes nothing in the reply


class AnthropicMessage(StrictModel):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class MessagesRequest(RequestModel):
    model: str = ""  # optional here: the loaded model
    messages: list[AnthropicMessage] = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    system: str | list[dict[str, Any]] | None = None
    stop_sequences: list[str] | None = Field(None, max_length=16)
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0, le=1000)
    metadata: Metadata | None = None
    tools: list[AnthropicTool] | None = Field(None, max_length=128)
    tool_choice: dict[str, Any] | None = None
    thinking: ThinkingConfig | None = None
    output_config: OutputConfig | None = None
    service_tier: Literal["auto", "standard_only"] | None = None
    speed: Literal["standard"] | None = None  # "fast" is a mode of Anthropic's servers: a 400 naming it
    cache_control: dict[str, Any] | None = None  # a prompt-caching hint: Lantern reuses every prefix anyway
    # Which account, region or user a request is for: nothing in the reply depends on them here
    user_profile_id: str | None = None
    workspace_id: str | None = None
    inference_geo: str | None = None

    def to_engine(self) -> GenerationRequest:
        tools = []
        if self.tools:
            defs = [ToolDef(type="function", function=FunctionDef(name=t.name, description=t.description,
                                                                     parameters=t.input_schema)) for t in self.tools]
            try:
                tools = check_tools(defs)
            except UnsupportedField as e:
                raise UnsupportedField(e.param.replace(".function.parameters", ".input_schema")
                                       .replace(".function.name", ".name"), str(e)) from None
        choice, name, parallel = _tool_choice(self.tool_choice, tools)
        options: dict[str, Any] = {}
        if self.thinking is not None:
            options["enable_thinking"] = self.thinking.type != "disabled"
            if self.thinking.type == "enabled":
                budget = self.thinking.budget_tokens
                if budget is None:
                    raise UnsupportedField("thinking.budget_tokens", "enabled thinking needs budget_tokens")
                if budget >= self.max_tokens:
                    raise UnsupportedField("thinking.budget_tokens", "budget_tokens must be less than max_tokens")
                # the model's own reasoning levels, by budget (templates without levels ignore this)
                options["reasoning_effort"] = "low" if budget < 4096 else "medium" if budget < 16384 else "high"
            elif self.thinking.budget_tokens is not None:
                raise UnsupportedField("thinking.budget_tokens", f"{self.thinking.type} thinking takes no budget")
        json_schema = None
        if self.output_config is not None:
            if self.output_config.effort is not None:  # the model's reasoning levels top out at high
                options["reasoning_effort"] = {"xhigh": "high", "max": "high"}.get(self.output_config.effort,
                                                                                   self.output_config.effort)
            if self.output_config.format is not None:
                json_schema = _schema(self.output_config.format.schema_)
        stops = list(self.stop_sequences or [])
        if any(not s for s in stops):
            raise UnsupportedField("stop_sequences", "stop sequences must not be empty")
        sampling = SamplingParams(temperature=1.0 if self.temperature is None else self.temperature,
                                  top_p=1.0 if self.top_p is None else self.top_p, top_k=self.top_k or 0,
                                  min_p=0.0)
        return GenerationRequest(messages=self.engine_messages(), sampling=sampling, max_tokens=self.max_tokens,
                                 stop=stops, tools=tuple(tools), tool_choice=choice, tool_name=name,
                                 parallel_tool_calls=parallel, template_options=options, json_schema=json_schema)

    @property
    def thinking_shown(self) -> bool:
        return self.thinking is None or self.thinking.display != "omitted"

    def engine_messages(self) -> list[dict]:
        out: list[dict] = []
        system = _system_text(self.system)
        if system:
            out.append({"role": "system", "content": system})
        calls: dict[str, str] = {}  # tool_use id -> tool name, for the results that answer them
        for i, m in enumerate(self.messages):
            blocks = [{"type": "text", "text": m.content}] if isinstance(m.content, str) else m.content
            if m.role == "assistant":
                out.append(_assistant(blocks, f"messages[{i}]", calls))
            else:
                out.extend(_user(blocks, f"messages[{i}]", calls))
        return out


def _schema(schema: dict) -> dict:
    """A structured output's schema, checked as the OpenAI endpoints check theirs."""
    try:
        return response_schema({"type": "json_schema", "json_schema": {"name": "output", "schema": schema}})
    except UnsupportedField as e:
        raise UnsupportedField("output_config.format.schema", str(e)) from None


def _system_text(system) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    texts = []
    for j, block in enumerate(system):
        _check_block(block, {"text"}, f"system[{j}]", {"text"})
        texts.append(block["text"])
    return "\n\n".join(texts)


def _check_block(block: dict, kinds: set[str], where: str, fields: set[str]) -> str:
    kind = block.get("type")
    if kind not in kinds:
        raise UnsupportedField(f"{where}.type", f"{kind!r} blocks are not supported here: use {sorted(kinds)}")
    extra = set(block) - fields - {"type"} - IGNORED_BLOCK_FIELDS - DEFINED_UNUSED_FIELDS.get(kind, set())
    if extra:
        raise UnsupportedField(f"{where}.{sorted(extra)[0]}", f"unknown field {sorted(extra)[0]!r}")
    for name in fields - {"input", "content", "is_error", "signature", "source"}:
        if not isinstance(block.get(name), str):
            raise UnsupportedField(f"{where}.{name}", f"{name} must be a string")
    return kind


def _assistant(blocks: list[dict], where: str, calls: dict[str, str]) -> dict:
    texts, thoughts, tool_calls = [], [], []
    for j, block in enumerate(blocks):
        at = f"{where}.content[{j}]"
        kind = _check_block(block, {"text", "thinking", "tool_use", "redacted_thinking"}, at,
                            {"text": {"text"}, "thinking": {"thinking", "signature"}, "tool_use": {"id", "name", "input"},
                             "redacted_thinking": {"data"}}.get(block.get("type"), set()))
        if kind == "text":
            texts.append(block["text"])
        elif kind == "thinking":
            thoughts.append(block["thinking"])
        elif kind == "redacted_thinking":
            raise UnsupportedField(f"{at}.type", "redacted_thinking blocks come from Anthropic's models and cannot "
                                                 "be read by a local one: leave them out")
        else:
            if not isinstance(block.get("input"), dict):
                raise UnsupportedField(f"{at}.input", "a tool_use block's input must be a JSON object")
            calls[block["id"]] = block["name"]
            tool_calls.append({"id": block["id"], "type": "function",
                               "function": {"name": block["name"], "arguments": json.dumps(block["input"])}})
    message: dict = {"role": "assistant", "content": "".join(texts) if texts or not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    return message


def _user(blocks: list[dict], where: str, calls: dict[str, str]) -> list[dict]:
    """A user turn: its tool results as tool messages (first, as Anthropic orders them), then its text."""
    out, texts, images = [], [], []
    for j, block in enumerate(blocks):
        at = f"{where}.content[{j}]"
        kind = _check_block(block, {"text", "tool_result", "image"}, at, {"text": {"text"}, "tool_result": {
            "tool_use_id", "content", "is_error"}, "image": {"source"}}.get(block.get("type"), set()))
        if kind == "text":
            texts.append(block["text"])
            continue
        if kind == "image":
            images.append(_image_part(block.get("source"), f"{at}.source"))
            continue
        if block["tool_use_id"] not in calls:
            raise UnsupportedField(f"{at}.tool_use_id", f"tool_result answers {block['tool_use_id']!r}, which no "
                                                        "earlier tool_use made")
        content = block.get("content", "")
        if isinstance(content, list):
            for k, part in enumerate(content):
                _check_block(part, {"text"}, f"{at}.content[{k}]", {"text"})
            content = "".join(part["text"] for part in content)
        elif not isinstance(content, str):
            raise UnsupportedField(f"{at}.content", "a tool_result's content is a string or text blocks")
        if block.get("is_error"):
            content = f"Error: {content}"  # the model reads that the tool failed
        out.append({"role": "tool", "tool_call_id": block["tool_use_id"], "name": calls[block["tool_use_id"]],
                    "content": content})
    if texts or images:  # images as image_url parts, checked and decoded by the engine (chat_format/chat_template.py)
        text = "\n\n".join(texts)
        out.append({"role": "user", "content": [*images, {"type": "text", "text": text}] if images else text})
    if not out:
        raise UnsupportedField(f"{where}.content", "a user message needs text or tool_result blocks")
    return out


def _image_part(source, where: str) -> dict:
    """An Anthropic image block's source as an image_url part: base64 data only (Lantern never fetches a URL)."""
    if not isinstance(source, dict) or source.get("type") != "base64":
        raise UnsupportedField(where, "an image's source must be {\"type\": \"base64\", \"media_type\": ..., "
                                      "\"data\": ...}: Lantern does not fetch images from URLs")
    media, data = source.get("media_type"), source.get("data")
    if not isinstance(media, str) or not media.startswith("image/") or not isinstance(data, str):
        raise UnsupportedField(where, "an image's source needs media_type (image/...) and data (base64)")
    return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}


def _tool_choice(choice: dict | None, tools: list) -> tuple[str, str | None, bool]:
    """(engine tool choice, forced tool name, parallel calls allowed)."""
    if choice is None:
        return "auto", None, True
    kind = choice.get("type")
    allowed = {"auto": {"type", "disable_parallel_tool_use"}, "any": {"type", "disable_parallel_tool_use"},
               "tool": {"type", "name", "disable_parallel_tool_use"}, "none": {"type"}}
    if kind not in allowed:
        raise UnsupportedField("tool_choice.type", f"{kind!r} is not one of 'auto', 'any', 'tool', 'none'")
    if set(choice) - allowed[kind]:
        raise UnsupportedField("tool_choice", f"unknown field {sorted(set(choice) - allowed[kind])[0]!r}")
    parallel = not choice.get("disable_parallel_tool_use", False)
    if kind == "none":
        return "none", None, parallel
    if not tools:
        raise UnsupportedField("tool_choice", f"tool_choice {kind!r} needs tools")
    if kind == "auto":
        return "auto", None, parallel
    if kind == "any":
        return "required", None, parallel
    if choice.get("name") not in {t.name for t in tools}:
        raise UnsupportedField("tool_choice.name", f"tool_choice names {choice.get('name')!r}, which is not among "
                                                   "the tools")
    return "required", choice["name"], parallel


class CountTokensRequest(RequestModel):
    model: str = ""
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    tools: list[AnthropicTool] | None = Field(None, max_length=128)
    tool_choice: dict[str, Any] | None = None
    thinking: ThinkingConfig | None = None
    output_config: OutputConfig | None = None
    cache_control: dict[str, Any] | None = None

    def as_messages(self) -> MessagesRequest:
        return MessagesRequest(model=self.model, messages=self.messages, system=self.system, tools=self.tools,
                               tool_choice=self.tool_choice, thinking=self.thinking, output_config=self.output_config,
                               max_tokens=max(2, (self.thinking.budget_tokens or 0) + 1) if self.thinking else 2)
