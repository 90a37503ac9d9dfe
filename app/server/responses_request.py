"""A Responses API request, and its `input` items as the engine's chat messages (app.server.responses serves it)."""
from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from app.server.request_parts import FunctionDef, RequestModel, StrictModel, ToolDef, UnsupportedField, response_schema
from app.server.tool_checks import check_tools, tool_choice
from engine.events import GenerationRequest
from engine.sampling import SamplingParams

STORED = 256  # responses kept for previous_response_id (their whole conversations: text only, small)


class Reasoning(StrictModel):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None  # the thinking comes whole, as reasoning_text
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class TextConfig(StrictModel):
    format: dict[str, Any] | None = None
    verbosity: Literal["medium"] | None = None  # other verbosities would change the reply: a 400 naming it


class StreamOptions(StrictModel):
    include_obfuscation: bool | None = None  # padding against side channels: nothing to pad on loopback


class ResponsesRequest(RequestModel):
    model: str = ""  # optional here: the loaded model
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = Field(None, max_length=128)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: Reasoning | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    store: bool | None = None
    previous_response_id: str | None = Field(None, max_length=200)
    metadata: dict[str, str] | None = Field(None, max_length=16)
    truncation: Literal["auto", "disabled"] | None = None  # auto: the oldest turns go when the context is full
    include: list[str] | None = None
    service_tier: Literal["auto", "default", "flex", "priority"] | None = None
    # Who asks, and a hint for OpenAI's own prompt cache: nothing in the reply depends on them here
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    background: bool | None = None
    max_tool_calls: int | None = None
    top_logprobs: int | None = None

    def check(self) -> None:
        if self.background:
            raise UnsupportedField("background", "background responses are not supported: wait for the reply, or "
                                                 "stream it")
        if self.max_tool_calls is not None:
            raise UnsupportedField("max_tool_calls", "max_tool_calls is not supported yet")
        if self.top_logprobs:
            raise UnsupportedField("top_logprobs", "logprobs are not supported yet")
        for i, name in enumerate(self.include or ()):
            raise UnsupportedField(f"include[{i}]", f"{name!r} cannot be included: Lantern adds nothing to output "
                                                    "items beyond what they always carry")
        if self.service_tier in ("flex", "priority"):
            raise UnsupportedField("service_tier", "Lantern has one service tier")

    def to_engine(self, history: list[dict]) -> GenerationRequest:
        self.check()
        defs = []
        for i, t in enumerate(self.tools or ()):
            if t.get("type") != "function":
                raise UnsupportedField(f"tools[{i}].type", f"{t.get('type')!r} tools are not supported: only "
                                                            "function tools")
            extra = set(t) - {"type", "name", "description", "parameters", "strict"}
            if extra:
                raise UnsupportedField(f"tools[{i}].{sorted(extra)[0]}", f"unknown field {sorted(extra)[0]!r}")
            try:
                defs.append(ToolDef(type="function", function=FunctionDef(
                    name=t.get("name"), description=t.get("description"), parameters=t.get("parameters"),
                    strict=t.get("strict"))))
            except ValueError as e:
                raise UnsupportedField(f"tools[{i}]", f"not a valid function tool: {e}") from None
        try:
            tools = check_tools(defs)
        except UnsupportedField as e:
            raise UnsupportedField(e.param.replace(".function", ""), str(e)) from None
        choice = self.tool_choice
        if isinstance(choice, dict):  # the Responses form of a named function
            if choice.get("type") != "function" or set(choice) != {"type", "name"}:
                raise UnsupportedField("tool_choice", 'a named tool_choice is {"type": "function", "name": ...}')
            choice = {"type": "function", "function": {"name": choice["name"]}}
        elif choice not in (None, "auto", "none", "required"):
            raise UnsupportedField("tool_choice", f"{choice!r} is not one of 'auto', 'none', 'required'")
        engine_choice, name = tool_choice(choice, tools)
        fmt = self.text.format if self.text is not None else None
        if fmt is not None and fmt.get("type") == "json_schema":  # flat here, nested under json_schema in chat
            spec = {k: v for k, v in fmt.items() if k != "type"}
            fmt = {"type": "json_schema", "json_schema": spec}
        try:
            schema = response_schema(fmt)
        except UnsupportedField as e:
            raise UnsupportedField(e.param.replace("response_format.json_schema", "text.format")
                                   .replace("response_format", "text.format"), str(e)) from None
        options: dict[str, Any] = {}
        if self.reasoning is not None and self.reasoning.effort is not None:
            effort = self.reasoning.effort
            options["reasoning_effort"] = {"xhigh": "high"}.get(effort, effort)
            if effort == "none":
                options["enable_thinking"] = False
        messages = list(history)
        if self.instructions:  # instructions are this request's alone: a previous response's do not carry over
            messages = [m for m in messages if m["role"] != "system"]
            messages.insert(0, {"role": "system", "content": self.instructions})
        messages += input_messages(self.input, known_calls(history))
        sampling = SamplingParams(temperature=1.0 if self.temperature is None else self.temperature,
                                  top_p=1.0 if self.top_p is None else self.top_p, top_k=0, min_p=0.0)
        return GenerationRequest(messages=messages, sampling=sampling, max_tokens=self.max_output_tokens,
                                 tools=tuple(tools), tool_choice=engine_choice, tool_name=name,
                                 parallel_tool_calls=self.parallel_tool_calls is not False, json_schema=schema,
                                 template_options=options, drop_oldest_turns=self.truncation == "auto")


def known_calls(messages: list[dict]) -> dict[str, str]:
    return {c["id"]: c["function"]["name"] for m in messages for c in m.get("tool_calls") or ()}


def _text_of(content, where: str, kinds: set[str]) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise UnsupportedField(where, "content is a string or a list of text parts")
    texts = []
    for k, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in kinds:
            raise UnsupportedField(f"{where}[{k}].type", f"{kind!r} parts are not supported here: only "
                                                          f"{sorted(kinds)}")
        if not isinstance(part.get("text"), str):
            raise UnsupportedField(f"{where}[{k}].text", "text must be a string")
        texts.append(part["text"])
    return "".join(texts)


def _with_images(content: list, where: str) -> list[dict]:
    """A user message's input_text and input_image parts as chat parts (the engine checks and decodes the images)."""
    out = []
    for k, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "input_text" and isinstance(part.get("text"), str):
            out.append({"type": "text", "text": part["text"]})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url.startswith("data:"):
                raise UnsupportedField(f"{where}[{k}].image_url", "an input_image is a data: URL here (Lantern does "
                                                                   "not fetch URLs or keep files)")
            out.append({"type": "image_url", "image_url": {"url": url}})
        else:
            raise UnsupportedField(f"{where}[{k}].type", f"{kind!r} parts are not supported here: only input_text "
                                                          "and input_image")
    return out


def input_messages(items: str | list[dict], calls: dict[str, str]) -> list[dict]:
    """The request's `input` as engine messages; function outputs must answer a call made before them."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    out: list[dict] = []
    thinking = ""  # a reasoning item: the thinking of the assistant turn that follows it
    for i, item in enumerate(items):
        where = f"input[{i}]"
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise UnsupportedField(f"{where}.role", f"{role!r} is not one of user, system, developer, assistant")
            parts = {"output_text", "refusal"} if role == "assistant" else {"input_text"}
            content = item.get("content")
            if role == "user" and isinstance(content, list) and any(
                    isinstance(p, dict) and p.get("type") == "input_image" for p in content):
                text = _with_images(content, f"{where}.content")
            else:
                text = _text_of(content, f"{where}.content", parts)
            if role == "assistant":
                out.append({"role": "assistant", "content": text, **({"reasoning_content": thinking}
                                                                    if thinking else {})})
                thinking = ""
            else:
                thinking = _flush(out, thinking)
                out.append({"role": "system" if role == "developer" else role, "content": text})
        elif kind == "function_call":
            for key in ("call_id", "name", "arguments"):
                if not isinstance(item.get(key), str):
                    raise UnsupportedField(f"{where}.{key}", f"{key} must be a string")
            try:
                if not isinstance(json.loads(item["arguments"]), dict):
                    raise ValueError
            except ValueError:
                raise UnsupportedField(f"{where}.arguments", "the arguments must be a JSON object's text") from None
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            calls[item["call_id"]] = item["name"]
            if out and out[-1]["role"] == "assistant" and not thinking:  # the same turn: its text, then its calls
                out[-1].setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call],
                            **({"reasoning_content": thinking} if thinking else {})})
                thinking = ""
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if call_id not in calls:
                raise UnsupportedField(f"{where}.call_id", f"function_call_output answers {call_id!r}, which no "
                                                           "earlier function_call made")
            output = _text_of(item.get("output"), f"{where}.output", {"input_text"})
            thinking = _flush(out, thinking)
            out.append({"role": "tool", "tool_call_id": call_id, "name": calls[call_id], "content": output})
        elif kind == "reasoning":
            parts = item.get("content") or []
            thinking += _text_of(parts, f"{where}.content", {"reasoning_text"}) if parts else \
                _text_of(item.get("summary") or [], f"{where}.summary", {"summary_text"})
        else:
            raise UnsupportedField(f"{where}.type", f"{kind!r} items are not supported: only message, "
                                                    "function_call, function_call_output and reasoning")
    _flush(out, thinking)
    return out


def _flush(out: list[dict], thinking: str) -> str:
    """Thinking with no answer after it (the reply ran out of tokens while thinking) is an assistant turn of its own,
    so the conversation reads as the model left it."""
    if thinking:
        out.append({"role": "assistant", "content": "", "reasoning_content": thinking})
    return ""
