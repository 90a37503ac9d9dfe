"""Checks of a chat request's tools, tool choice and tool messages: each problem is a 400 naming its field."""
from __future__ import annotations

import json
from typing import Any

from app.server.request_parts import ChatMessage, TextPart, ToolDef, UnsupportedField
from basics.errors import InvalidRequestError
from chat_format.tool_formats import Tool, json_rule
from engine.constraint import check_grammar


def check_tools(tools: list[ToolDef]) -> list[Tool]:
    out, seen = [], set()
    for i, t in enumerate(tools):
        f = t.function
        where = f"tools[{i}].function"
        if f.name in seen:
            raise UnsupportedField(f"{where}.name", f"two tools are named {f.name!r}")
        seen.add(f.name)
        params = f.parameters if f.parameters is not None else {"type": "object", "properties": {}}
        if params.get("type", "object") != "object":
            raise UnsupportedField(f"{where}.parameters", "a function's parameters must be a JSON schema of type "
                                                          "'object'")
        try:
            check_grammar("start: " + json_rule(params), param=f"{where}.parameters")
        except InvalidRequestError as e:
            raise UnsupportedField(f"{where}.parameters", str(e)) from None
        out.append(Tool(f.name, params, f.description or ""))
    return out


def tool_choice(choice: Any, tools: list[Tool]) -> tuple[str, str | None]:
    """("auto" | "none" | "required", the forced function's name or None)."""
    if choice is None:
        return "auto", None
    if isinstance(choice, str):
        if choice != "none" and not tools:
            raise UnsupportedField("tool_choice", f"tool_choice {choice!r} needs tools")
        return choice, None
    f = choice.get("function") if choice.get("type") == "function" else None
    name = f.get("name") if isinstance(f, dict) else None
    if not isinstance(name, str) or set(choice) != {"type", "function"}:
        raise UnsupportedField("tool_choice", 'a named tool_choice is {"type": "function", "function": {"name": ...}}')
    if name not in {t.name for t in tools}:
        raise UnsupportedField("tool_choice", f"tool_choice names {name!r}, which is not among the tools")
    return "required", name


def check_messages(messages: list[ChatMessage]) -> list[dict]:
    """Messages as the engine takes them; tool results must answer a call made before them."""
    out, open_calls = [], {}
    for i, m in enumerate(messages):
        content = m.content
        if isinstance(content, list):
            parts = []
            for j, part in enumerate(content):
                if isinstance(part, TextPart):
                    parts.append({"type": "text", "text": part.text})
                elif part.get("type") == "image_url":  # decoded and checked by the engine (chat_format/chat_template)
                    url = part.get("image_url")
                    url = url.get("url") if isinstance(url, dict) else url
                    if not isinstance(url, str) or not url.startswith("data:"):
                        raise UnsupportedField(f"messages[{i}].content",
                                               f"content[{j}]: Lantern does not fetch images from URLs; send the "
                                               "image itself as a data: URL (data:image/png;base64,...)")
                    parts.append({"type": "image_url", "image_url": {"url": url}})
                else:
                    kind = part.get("type")
                    raise UnsupportedField(f"messages[{i}].content",
                                           f"{str(kind)[:40]!r} parts are not supported: only text and image_url")
            content = parts
        d: dict = {"role": "system" if m.role == "developer" else m.role, "content": content}
        if m.tool_calls and m.role != "assistant":
            raise UnsupportedField(f"messages[{i}].tool_calls", "only assistant messages make tool calls")
        if m.role == "assistant":
            calls = []
            for j, c in enumerate(m.tool_calls or ()):
                calls.append(_call(c, f"messages[{i}].tool_calls[{j}]"))
                open_calls[c.id] = c.function.name
            if calls:
                d["tool_calls"] = calls
            if content is None and not calls:
                raise UnsupportedField(f"messages[{i}].content", "an assistant message needs content or tool_calls")
            if m.reasoning_content is not None:
                d["reasoning_content"] = m.reasoning_content
        elif content is None:
            raise UnsupportedField(f"messages[{i}].content", "content is required")
        if m.role == "tool":
            if m.tool_call_id is None or m.tool_call_id not in open_calls:
                raise UnsupportedField(f"messages[{i}].tool_call_id",
                                       f"tool message answers {m.tool_call_id!r}, which no earlier tool call made")
            d["tool_call_id"] = m.tool_call_id
            d["name"] = m.name or open_calls[m.tool_call_id]
        elif m.tool_call_id is not None:
            raise UnsupportedField(f"messages[{i}].tool_call_id", "only tool messages answer a tool call")
        out.append(d)
    return out


def _call(c, where: str) -> dict:
    try:
        args = json.loads(c.function.arguments)
    except ValueError:
        raise UnsupportedField(f"{where}.function.arguments", "the arguments are not valid JSON") from None
    if not isinstance(args, dict):
        raise UnsupportedField(f"{where}.function.arguments", "the arguments must be a JSON object")
    return {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
