"""What a chat template can take, learnt by rendering probes, and messages rewritten for what it cannot.

As llama.cpp's minja does: a template that refuses the system role gets the system text at the start of the
first user message; one that prints no tool calls gets them as JSON text; one that knows no tool role gets
tool results as user messages; one that iterates content parts gets a list of typed parts.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from basics.errors import LanternError

if TYPE_CHECKING:
    from chat_format.chat_template import ChatTemplate, Message

_PROBE = "\ue010probe\ue011"
_CALL_ID = "a1b2c3d4e"  # Mistral's templates take only nine letters and digits
_TOOL = {"type": "function", "function": {"name": "lantern_probe_tool", "description": "A probe.",
                                          "parameters": {"type": "object", "properties": {"x": {"type": "string", "description": "x"}},
                                                         "required": ["x"]}}}


class Arguments(dict):
    """A call's arguments: a mapping for templates that iterate them, its JSON text for those that print it."""

    def __init__(self, text: str):
        super().__init__(json.loads(text))
        self.text = text

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Caps:
    system_role: bool = True
    typed_content: bool = False  # content must come as [{"type": "text", "text": ...}]
    tools: bool = False  # renders tool definitions given as `tools`
    tool_calls: bool = False  # prints an assistant's tool_calls
    tool_responses: bool = False  # prints messages of role "tool"
    reasoning: bool = False  # prints an assistant's reasoning_content (at least in the last turn)
    null_content: bool = True  # takes content None (an assistant turn of tool calls only); else ""
    tools_list: bool = False  # fails on tools=None: a chat with no tools gets tools=[]
    flat_tools: bool = False  # reads tool.name/description/parameters at the top (Command R+)


def probe(template: ChatTemplate) -> Caps:
    def shows(messages: list[dict], needle: str = _PROBE, **kw) -> bool:
        try:
            return needle in template.render_raw(messages, **kw)
        except LanternError:
            return False

    user = {"role": "user", "content": "hello"}
    typed = not shows([{"role": "user", "content": _PROBE}]) and shows(
        [{"role": "user", "content": [{"type": "text", "text": _PROBE}]}])

    def text(s: str):
        return [{"type": "text", "text": s}] if typed else s

    call = {"id": _CALL_ID, "type": "function", "function": {"name": "lantern_probe_tool",
                                                                  "arguments": Arguments('{"x": "y"}')}}
    tools_list = not _renders(template, [user]) and _renders(template, [user], tools=[])
    flat = _flat_tool(_TOOL)
    flat_tools = not shows([user], "lantern_probe_tool", tools=[_TOOL]) and shows([user], "lantern_probe_tool",
                                                                                    tools=[flat])
    tools = [flat] if flat_tools else [_TOOL]
    # not as the last message: some templates treat earlier turns differently (QwQ splits off past thinking)
    null = _renders(template, [user, {"role": "assistant", "content": None, "tool_calls": [call]},
                               {"role": "tool", "content": "r", "tool_call_id": _CALL_ID}, user], tools=tools)
    with_call = {"role": "assistant", "content": None if null else text(""), "tool_calls": [call]}
    if tools_list:
        shows = _with_default_tools(shows)
    return Caps(
        system_role=shows([{"role": "system", "content": text(_PROBE)}, {**user, "content": text("hello")}]),
        typed_content=typed,
        tools=shows([{**user, "content": text("hello")}], "lantern_probe_tool", tools=tools),
        tool_calls=shows([{**user, "content": text("hello")}, with_call], "lantern_probe_tool", tools=tools),
        tool_responses=shows([{**user, "content": text("hello")}, with_call,
                              {"role": "tool", "content": text(_PROBE), "tool_call_id": _CALL_ID,
                               "name": "lantern_probe_tool"}], tools=tools),
        reasoning=shows([{**user, "content": text("hello")},
                         {"role": "assistant", "content": text("hi"), "reasoning_content": _PROBE}]),
        null_content=null, tools_list=tools_list, flat_tools=flat_tools,
    )


def _renders(template: ChatTemplate, messages: list[dict], **kw) -> bool:
    try:
        template.render_raw(messages, **kw)
        return True
    except LanternError:
        return False


def _with_default_tools(shows):
    def shows_with_tools(messages, needle=_PROBE, **kw):
        kw.setdefault("tools", [])
        return shows(messages, needle, **kw)

    return shows_with_tools


def tools_for(tools, caps: Caps):
    """The tool definitions as this template reads them."""
    if not tools:
        return [] if caps.tools_list else None
    return [_flat_tool(t) for t in tools] if caps.flat_tools else list(tools)


def _flat_tool(tool: dict) -> dict:
    f = tool.get("function") or {}
    return {**tool, "name": f.get("name"), "description": f.get("description", ""),
            "parameters": f.get("parameters", {})}


def adapt(messages: Sequence[Message], caps: Caps) -> list[dict]:
    """Template-ready dicts for `messages`, rewritten for what the template cannot take."""
    out: list[dict] = []
    merged_results = False  # out[-1] holds tool results written as a user turn
    for m in messages:
        d: dict = {"role": m.role, "content": m.content if m.content is not None or caps.null_content else ""}
        if m.tool_calls:
            if caps.tool_calls:
                d["tool_calls"] = [_call_dict(c, Arguments(c.arguments)) for c in m.tool_calls]
            else:  # the generic format's own shape, which the model wrote when it made the call
                calls = ", ".join(f'{{"name": {_json(c.name)}, "arguments": {c.arguments}}}' for c in m.tool_calls)
                d["content"] = (m.content + "\n" if m.content else "") + f'{{"tool_calls": [{calls}]}}'
        if m.role == "tool":
            if caps.tool_responses:
                d.update(tool_call_id=m.tool_call_id, name=m.name)
            elif merged_results:  # one user turn for consecutive results: templates that alternate roles take it
                out[-1]["content"] += "\n" + _tool_result_text(m)
                continue
            else:
                d = {"role": "user", "content": _tool_result_text(m)}
        merged_results = m.role == "tool" and not caps.tool_responses
        if m.reasoning is not None:
            d["reasoning_content"] = m.reasoning
        out.append(d)
    if not caps.system_role:
        out = _merge_system(out)
    if caps.typed_content:
        for d in out:
            if isinstance(d["content"], str):
                d["content"] = [{"type": "text", "text": d["content"]}]
    return out


def _call_dict(c, args) -> dict:
    return {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": args},
            "name": c.name, "arguments": args}


def _tool_result_text(m: Message) -> str:
    # Content stays as it is (no JSON escaping), so it is still tokenized as plain text (render_parts).
    return f'<tool_response name="{m.name or ""}" id="{m.tool_call_id or ""}">\n{m.content}\n</tool_response>'


def _merge_system(out: list[dict]) -> list[dict]:
    system = "\n\n".join(d["content"] for d in out if d["role"] == "system" and d["content"])
    rest = [d for d in out if d["role"] != "system"]
    if not system:
        return rest
    for d in rest:
        if d["role"] == "user":
            d["content"] = f"{system}\n\n{d['content']}"
            return rest
    return [{"role": "user", "content": system}, *rest]


def _json(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)
