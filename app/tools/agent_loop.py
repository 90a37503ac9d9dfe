"""A chat's agent loop, without Qt: the model answers with the tools it is offered; each call it makes is shown, asked
about (allow once, allow for this chat, deny), run, and its result given back as the tool's answer; then the model
goes on, until it answers in text, a round limit is reached, or the user stops it.

The tools come from a ToolBox: the MCP servers' (app/tools/mcp_host.py) and Lantern's own (app/tools/builtin.py),
under names unique for the model. A call's arguments are checked against its tool's schema before anything runs; a
denial, a bad call or a failed tool goes back to the model as the tool's answer, and the loop goes on. Results are
untrusted text: they only ever become a tool message (whose text a chat template renders literally), never an
approval or a setting. Each round resends the same growing conversation, so with the engine's KV reuse a round
computes only the new call and result (`Round.prefill_tokens` says how many).
"""
from __future__ import annotations

import concurrent.futures
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from app.tools.builtin import SERVER as BUILTIN_SERVER, BuiltinTool, run_builtin
from app.tools.calls import ToolResult, check_arguments
from chat_format.tool_formats import Tool
from engine.events import Finished, GenerationRequest, TextDelta

ALLOW_ONCE, ALLOW_FOR_CHAT, DENY = "once", "chat", "deny"
DEFAULT_ROUNDS = 8
MAX_ROUNDS = 50
DENIED = "The user denied this call; do not call it again unless they ask."


@dataclass
class Call:
    """One call the model made, as the window shows it."""

    id: str
    name: str  # the name the model used
    server: str  # the MCP server's name, or "lantern" for a built-in tool
    tool: str
    arguments: object  # parsed JSON, or the text the model wrote when it is not JSON
    raw: str = ""  # the arguments as the model wrote them (replayed as they were: the cache keeps them)
    status: str = "asked"  # asked, allowed, denied, running, done, failed, cancelled
    result: ToolResult | None = None


@dataclass
class Round:
    index: int
    text: str = ""
    reasoning: str = ""
    calls: list[Call] = field(default_factory=list)
    prompt_tokens: int = 0
    prefill_tokens: int = 0  # prompt tokens computed this round (the rest came from the cache)
    ttft_ms: float = 0.0
    finish: str = ""
    started: float = 0.0  # time.monotonic() when the round's request went to the model


class ToolBox:
    """The tools one chat offers, under names unique for the model: MCP tools of ready servers and the built-in
    tools the user turned on; `chosen` (None: all) narrows them to the chat's choice ("server/tool" names)."""

    def __init__(self, host=None, builtins: Sequence[BuiltinTool] = (), *, chosen: set[str] | None = None,
                 folder=None, search: Callable[[str], str] | None = None):
        self.host, self.folder, self.search = host, folder, search
        offered = [(t.server, t.name, t.description, t.schema) for t in (host.tools() if host else [])]
        offered += [(BUILTIN_SERVER, b.name, b.description, b.schema) for b in builtins]
        if chosen is not None:
            offered = [o for o in offered if f"{o[0]}/{o[1]}" in chosen]
        clashes = {n for n in (o[1] for o in offered) if [p[1] for p in offered].count(n) > 1}
        self._by_name: dict[str, tuple[str, str, str, dict]] = {}
        for server, name, description, schema in offered:
            model_name = _model_name(f"{server}_{name}" if name in clashes else name, self._by_name)
            self._by_name[model_name] = (server, name, description, schema)

    def tools(self) -> list[Tool]:
        return [Tool(name, schema, description) for name, (_s, _n, description, schema) in self._by_name.items()]

    def keys(self) -> list[tuple[str, str]]:
        """(server, tool) of every tool offered, as a chat's choice names them ("server/tool")."""
        return [(server, name) for server, name, _d, _s in self._by_name.values()]

    def lookup(self, model_name: str) -> tuple[str, str, dict] | None:
        found = self._by_name.get(model_name)
        return (found[0], found[1], found[3]) if found else None

    def run(self, server: str, tool: str, arguments: dict) -> concurrent.futures.Future:
        if server == BUILTIN_SERVER:
            fut: concurrent.futures.Future = concurrent.futures.Future()
            fut.set_result(run_builtin(tool, arguments, folder=self.folder, search=self.search))
            return fut
        return self.host.call(server, tool, arguments)


def _model_name(wanted: str, taken: dict) -> str:
    """A function name every API and template takes: [A-Za-z0-9_-], at most 64 characters, not taken."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", wanted)[:60] or "tool"
    n, out = 2, name
    while out in taken:
        out, n = f"{name}_{n}", n + 1
    return out


@dataclass
class AgentLoop:
    """Runs a chat's rounds on the calling thread (the window runs it on a background task). `approve(call)` is
    asked for every call not allowed for the chat, and may block until the user answers; `on_event(kind, round,
    call)` reports progress ("text", "call", "running", "result", "round"); `stop` ends the loop (a running call is
    cancelled)."""

    worker: object
    toolbox: ToolBox
    approve: Callable[[Call], str]
    on_event: Callable[[str, Round, Call | None], None] = lambda kind, r, c: None
    max_rounds: int = DEFAULT_ROUNDS
    allowed_for_chat: set[str] = field(default_factory=set)  # "server/tool" the user allowed for this chat
    stop: threading.Event = field(default_factory=threading.Event)
    # request fields for a round (tests hold the model to a named tool, then to text: a deterministic loop)
    per_round: Callable[[int], dict] | None = None
    last: Finished | None = None  # the last round's end (its figures are the reply's)
    _cancelled: set = field(default_factory=set)

    def cancel(self, call_id: str) -> None:
        """Cancel one running call (its result says so; the loop goes on)."""
        self._cancelled.add(call_id)

    def run(self, request: GenerationRequest) -> tuple[list[Round], list[dict]]:
        """The rounds, and the messages they added to `request.messages` (assistant calls and tool results, then the
        answer), to be stored with the chat."""
        messages = list(request.messages)
        added: list[dict] = []
        rounds: list[Round] = []
        tools = self.toolbox.tools()
        for index in range(max(1, min(self.max_rounds, MAX_ROUNDS))):
            current = Round(index)
            rounds.append(current)
            fields = self.per_round(index) if self.per_round else {}
            final = self._generate(replace(request, messages=messages, tools=tools if tools else (), **fields),
                                   current)
            current.finish = final.reason if final else "cancelled"
            if final is None or self.stop.is_set() or not final.tool_calls or final.reason != "tool_calls":
                if current.text or current.reasoning:
                    added.append(_assistant(current, ()))
                return rounds, added
            calls = [self._call_of(c) for c in final.tool_calls]
            current.calls = calls
            said = _assistant(current, final.tool_calls)
            messages.append(said)
            added.append(said)
            for call in calls:
                self._settle(call, current)
                answer = {"role": "tool", "tool_call_id": call.id, "name": call.name,
                          "content": call.result.text if call.result else DENIED}
                messages.append(answer)
                added.append(answer)
            self.on_event("round", current, None)
            if self.stop.is_set():
                return rounds, added
            if index + 1 == min(self.max_rounds, MAX_ROUNDS):
                current.finish = "round limit"
        return rounds, added

    def _generate(self, request: GenerationRequest, current: Round) -> Finished | None:
        final = None
        current.started = time.monotonic()
        gen = self.worker.submit(request)
        for event in gen:
            if self.stop.is_set():
                gen.cancel()
            if isinstance(event, TextDelta):
                current.text += event.text
                current.reasoning += event.reasoning
                if event.text or event.reasoning:
                    self.on_event("text", current, None)
            elif isinstance(event, Finished):
                final = self.last = event
                s = event.stats
                current.prompt_tokens, current.prefill_tokens, current.ttft_ms = (s.prompt_tokens, s.prefill_tokens,
                                                                                  s.ttft_ms)
        return final

    def _call_of(self, c) -> Call:
        try:
            arguments = json.loads(c.arguments) if c.arguments.strip() else {}
        except ValueError:
            arguments = c.arguments
        found = self.toolbox.lookup(c.name)
        server, tool = (found[0], found[1]) if found else ("", c.name)
        return Call(c.id, c.name, server, tool, arguments, c.arguments)

    def _settle(self, call: Call, current: Round) -> None:
        """Check, ask, run: the call ends done, failed, denied or cancelled, with the result the model reads."""
        self.on_event("call", current, call)
        found = self.toolbox.lookup(call.name)
        if found is None:
            return self._end(call, current, "failed", ToolResult(f"There is no tool named {call.name!r}.", True))
        problem = check_arguments(found[2], call.arguments)
        if problem:
            return self._end(call, current, "failed", ToolResult(f"The arguments are not valid: {problem}", True))
        key = f"{call.server}/{call.tool}"
        if key not in self.allowed_for_chat:
            answer = self.approve(call) if not self.stop.is_set() else DENY
            if answer == ALLOW_FOR_CHAT:
                self.allowed_for_chat.add(key)
            elif answer != ALLOW_ONCE:
                return self._end(call, current, "denied", ToolResult(DENIED, True))
        call.status = "running"
        self.on_event("running", current, call)
        t0 = time.monotonic()
        future = self.toolbox.run(call.server, call.tool, call.arguments)
        while True:
            try:
                result = future.result(timeout=0.1)
                break
            except concurrent.futures.TimeoutError:
                if self.stop.is_set() or call.id in self._cancelled:
                    future.cancel()
                    return self._end(call, current, "cancelled",
                                     ToolResult("The user cancelled this call.", True, time.monotonic() - t0))
            except concurrent.futures.CancelledError:
                return self._end(call, current, "cancelled",
                                 ToolResult("The user cancelled this call.", True, time.monotonic() - t0))
        self._end(call, current, "failed" if result.is_error else "done", result)

    def _end(self, call: Call, current: Round, status: str, result: ToolResult) -> None:
        call.status, call.result = status, result
        self.on_event("result", current, call)


def _assistant(current: Round, calls) -> dict:
    message = {"role": "assistant", "content": current.text or None}
    if current.reasoning:
        message["reasoning_content"] = current.reasoning
    if calls:
        message["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments}} for c in calls]
    elif message["content"] is None:
        message["content"] = ""
    return message


# -- stored with the message ---------------------------------------------------------------------------------------

def stored_rounds(rounds: Sequence[Round]) -> list[dict]:
    """The rounds that called tools, as a reply's message keeps them (app/conversations.StoredMessage.tools); the
    answer after them is the message's own text."""
    return [{"text": r.text, "reasoning": r.reasoning,
             "calls": [{"id": c.id, "name": c.name, "server": c.server, "tool": c.tool, "arguments": c.arguments,
                        "raw": c.raw, "status": c.status, "result": c.result.text if c.result else "",
                        "is_error": bool(c.result and c.result.is_error), "size": c.result.size if c.result else 0,
                        "seconds": round(c.result.seconds, 3) if c.result else 0.0,
                        "cut": bool(c.result and c.result.cut)} for c in r.calls]}
            for r in rounds if r.calls]


def replayed(tools: Sequence[dict]) -> list[dict]:
    """A stored reply's tool rounds as the messages the model saw: each round's call, then each result (the answer
    follows as the message's own text)."""
    out = []
    for r in tools:
        calls = [c for c in r.get("calls", ()) if isinstance(c, dict)]
        if not calls:
            continue
        said = {"role": "assistant", "content": r.get("text") or None,
                "tool_calls": [{"id": c["id"], "type": "function",
                                "function": {"name": c["name"],
                                             "arguments": c.get("raw") or _arguments_text(c.get("arguments"))}}
                               for c in calls]}
        if r.get("reasoning"):
            said["reasoning_content"] = r["reasoning"]
        out.append(said)
        out += [{"role": "tool", "tool_call_id": c["id"], "name": c["name"],
                 "content": str(c.get("result") or DENIED)} for c in calls]
    return out


def _arguments_text(arguments) -> str:
    if isinstance(arguments, str):
        return arguments
    try:
        return json.dumps(arguments, ensure_ascii=False)
    except (TypeError, ValueError):
        return "{}"
