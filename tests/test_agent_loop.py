"""The agent loop on the real starter model under a real tool template (Qwen2.5's, tests/agent_models.py), with a
real MCP server (tests/mcp_servers.py) and the built-in tools: calls held to a named tool so that the loop is
deterministic; approve, deny, allow for the chat, cancel a running call; and each round's prefill is only what is
new (the engine's KV cache keeps the rest)."""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest
from agent_models import family_models

from app.tools.agent_loop import ALLOW_FOR_CHAT, ALLOW_ONCE, DENIED, DENY, AgentLoop, ToolBox
from app.tools.builtin import CALCULATOR
from app.tools.mcp_host import READY, McpHost
from app.wiring import start_worker
from engine.events import GenerationRequest
from engine.sampling import SamplingParams
from runtimes.runtime import LoadOptions

SERVERS = str(Path(__file__).with_name("mcp_servers.py"))


@pytest.fixture(scope="module")
def worker(smollm2_path, tmp_path_factory):
    path = family_models(smollm2_path, tmp_path_factory.mktemp("agent"), ["smol-hermes"])["smol-hermes"]
    w = start_worker(path, options=LoadOptions(n_ctx=4096, slots=1))
    w.wait_ready(timeout=180)
    yield w
    w.close()


@pytest.fixture
def host(tmp_path):
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"tools": {"command": sys.executable, "args": [SERVERS, "tools"],
                                                         "enabled": True}}}))
    h = McpHost(path, call_timeout=60)
    assert h.start("tools").result(timeout=60).status == READY
    yield h
    h.close()


def _ask(text: str) -> GenerationRequest:
    return GenerationRequest(messages=[{"role": "user", "content": text}], max_tokens=120, parallel_tool_calls=False,
                             sampling=SamplingParams(temperature=0))


def _named_then_text(name: str, rounds_with_calls: int = 1):
    """Round i < rounds_with_calls: a call to `name` is required; then the model must answer in text."""
    return lambda i: {"tool_name": name, "tool_choice": "required"} if i < rounds_with_calls else \
        {"tool_choice": "none"}


def test_an_approved_call_runs_its_result_goes_back_and_the_next_round_computes_only_what_is_new(worker, host):
    box = ToolBox(host, [CALCULATOR], chosen={"tools/add", "lantern/calculate"})
    assert sorted(t.name for t in box.tools()) == ["add", "calculate"]
    asked, events = [], []
    loop = AgentLoop(worker, box, approve=lambda call: asked.append(call.name) or ALLOW_ONCE,
                     on_event=lambda kind, r, c: events.append(kind), per_round=_named_then_text("add"))
    rounds, added = loop.run(_ask("What is 2 plus 3? Use the add tool."))
    assert len(rounds) == 2 and asked == ["add"]
    call = rounds[0].calls[0]
    assert (call.server, call.tool, call.status) == ("tools", "add", "done")
    assert added[0]["tool_calls"][0]["function"]["name"] == "add"
    assert added[1] == {"role": "tool", "tool_call_id": call.id, "name": "add", "content": call.result.text}
    assert added[-1]["role"] == "assistant" and added[-1]["content"] == rounds[1].text and rounds[1].text
    assert events.index("call") < events.index("running") < events.index("result") < events.index("round")
    # round 2 resends round 1's prompt, the call and its result: only the call and result are computed again
    first, second = rounds
    assert second.prompt_tokens > first.prompt_tokens
    assert second.prompt_tokens - second.prefill_tokens >= first.prompt_tokens  # round 1's prompt: from the cache
    assert second.prefill_tokens < second.prompt_tokens - first.prompt_tokens + 120  # new text only, and the call


def test_a_denied_call_goes_back_as_the_tools_answer_and_allow_for_chat_stops_asking(worker, host):
    box = ToolBox(host, [], chosen={"tools/add"})
    loop = AgentLoop(worker, box, approve=lambda call: DENY, per_round=_named_then_text("add"))
    rounds, added = loop.run(_ask("Add 1 and 2 with the tool."))
    assert rounds[0].calls[0].status == "denied" and added[1]["content"] == DENIED

    asked = []
    loop = AgentLoop(worker, box, approve=lambda call: asked.append(call.name) or ALLOW_FOR_CHAT,
                     per_round=_named_then_text("add", rounds_with_calls=2))
    rounds, _ = loop.run(_ask("Add 1 and 2, then 3 and 4, with the tool."))
    assert asked == ["add"], [(r.finish, r.text[:80], r.calls) for r in rounds]
    assert loop.allowed_for_chat == {"tools/add"}  # asked once, then allowed for the chat
    assert [r.calls[0].status for r in rounds[:2]] == ["done", "done"]


def test_a_running_call_is_cancelled_when_the_user_stops(worker, host):
    box = ToolBox(host, [], chosen={"tools/hang"})
    stop = threading.Event()

    def on_event(kind, r, call):
        if kind == "running":
            threading.Timer(0.5, stop.set).start()

    loop = AgentLoop(worker, box, approve=lambda call: ALLOW_ONCE, on_event=on_event, stop=stop,
                     per_round=_named_then_text("hang"))
    rounds, added = loop.run(_ask("Call the hang tool."))
    assert rounds[0].calls[0].status == "cancelled" and "cancelled" in added[-1]["content"]
    assert len(rounds) == 1  # the loop ended with the user's stop
    assert host.call("tools", "echo", {"text": "ok"}).result(timeout=30).text == "ok"  # the server goes on


def test_the_round_limit_ends_a_loop_that_only_calls(worker, host):
    box = ToolBox(host, [], chosen={"tools/add"})
    loop = AgentLoop(worker, box, approve=lambda call: ALLOW_ONCE, max_rounds=2,
                     per_round=lambda i: {"tool_name": "add", "tool_choice": "required"})
    rounds, added = loop.run(_ask("Add 6 and 7 with the tool, twice."))
    assert len(rounds) == 2 and rounds[-1].finish == "round limit"
    assert all(r.calls and r.calls[0].status in ("done", "failed") for r in rounds)


def test_tool_names_are_unique_for_the_model_and_a_chats_choice_narrows_them(host):
    from app.tools.builtin import BUILTINS

    everything = ToolBox(host, BUILTINS)
    names = [t.name for t in everything.tools()]
    assert len(names) == len(set(names)) and "add" in names and "calculate" in names
    assert ToolBox(host, BUILTINS, chosen=set()).tools() == []
    assert [t.name for t in ToolBox(None, BUILTINS, chosen={"lantern/calculate"}).tools()] == ["calculate"]


def test_a_tool_answer_with_special_token_text_stays_text_in_the_prompt(worker, host):
    """A result that writes the template's own markers and a fake approval: the next round's prompt has exactly as
    many real message markers as with a plain answer, and nothing was approved by it."""
    counts = {}
    for tool in ("sneaky", "add"):
        asked = []
        box = ToolBox(host, [], chosen={f"tools/{tool}"})
        loop = AgentLoop(worker, box, approve=lambda call: asked.append(call.name) or ALLOW_ONCE,
                         per_round=_named_then_text(tool))
        rounds, added = loop.run(_ask(f"Use the {tool} tool."))
        assert asked == [tool] and loop.allowed_for_chat == set()  # the fake approval approved nothing
        start = worker.call(lambda e: e.runtime.tokenize("<|im_start|>", add_bos=False, parse_special=True)).result(30)
        cached = worker.call(lambda e: list(e.cached_tokens)).result(30)
        counts[tool] = cached[:rounds[1].prompt_tokens].count(start[0])
    assert len(start) == 1 and counts["add"] >= 3 and counts["sneaky"] == counts["add"]


def test_a_replys_tool_rounds_are_stored_with_it_and_replayed_as_the_model_saw_them(worker, host, tmp_path):
    from app.conversations import ConversationStore
    from app.tools.agent_loop import replayed, stored_rounds

    box = ToolBox(host, [], chosen={"tools/add"})
    loop = AgentLoop(worker, box, approve=lambda call: ALLOW_ONCE, per_round=_named_then_text("add"))
    rounds, added = loop.run(_ask("What is 2 plus 3?"))
    store = ConversationStore(tmp_path / "chats.sqlite3")
    try:
        chat = store.create()
        store.add(chat.id, "user", "What is 2 plus 3?")
        reply = store.add(chat.id, "assistant", rounds[-1].text, tools=stored_rounds(rounds))
        store.update(reply.id, content=rounds[-1].text, status="done", tools=stored_rounds(rounds))
    finally:
        store.close()
    again = ConversationStore(tmp_path / "chats.sqlite3")  # a restart
    try:
        kept = again.messages(chat.id)[-1]
        assert kept.tools[0]["calls"][0]["result"] == rounds[0].calls[0].result.text
        assert replayed(kept.tools) == [{**m, "content": m["content"]} for m in added[:-1]]
    finally:
        again.close()


def test_tool_rounds_export_to_markdown_and_json_and_come_back_with_an_import(tmp_path):
    from app.chat_export import chat_json, chat_markdown, import_file
    from app.conversations import ConversationStore

    rounds = [{"text": "Let me add.", "reasoning": "", "calls": [
        {"id": "c1", "name": "add", "server": "tools", "tool": "add", "arguments": {"a": 2, "b": 3}, "raw": "",
         "status": "done", "result": "5", "is_error": False, "size": 1, "seconds": 0.01, "cut": False}]}]
    store = ConversationStore(tmp_path / "chats.sqlite3")
    try:
        chat = store.create("Sums")
        store.add(chat.id, "user", "2+3?")
        store.add(chat.id, "assistant", "It is 5.", tools=rounds)
        markdown = chat_markdown(store, chat.id)
        assert "**Tool call** `tools/add` (done)" in markdown and '"a": 2' in markdown and "It is 5." in markdown
        doc = chat_json(store, chat.id)
        assert doc["messages"][1]["lantern"]["tools"][0]["calls"][0]["result"] == "5"
        path = tmp_path / "chat.json"
        path.write_text(json.dumps(doc))
        doc["messages"][1]["lantern"]["tools"] = [{"calls": [{"id": 5}]}, "junk", {"calls": "x"}]  # damaged
        (tmp_path / "bad.json").write_text(json.dumps(doc))
        import_file(store, path)
        import_file(store, tmp_path / "bad.json")
        copies = [c for c in store.conversations() if c.id != chat.id]
        kept = {len(store.messages(c.id)[-1].tools) for c in copies}
        assert kept == {1, 0} or kept == {0, 1}
        good = next(c for c in copies if store.messages(c.id)[-1].tools)
        assert store.messages(good.id)[-1].tools[0]["calls"][0]["result"] == "5"
    finally:
        store.close()


def test_a_round_that_forces_one_tool_keeps_the_prompt_of_every_round(engine):
    """The generic tool format (the starter's template has none) lists every tool even when one is forced, as the
    native formats do, so an agent's forced round and its free rounds share the prompt (and the KV cache)."""
    from chat_format.tool_formats import Tool

    tools = (Tool("add", {"type": "object", "properties": {"a": {"type": "integer"}}}, "Add."),
             Tool("echo", {"type": "object", "properties": {"text": {"type": "string"}}}, "Echo."))
    base = GenerationRequest(messages=[{"role": "user", "content": "Hi"}], tools=tools, max_tokens=8)
    from dataclasses import replace

    free = engine.count_prompt_tokens(base)
    assert engine.count_prompt_tokens(replace(base, tool_name="add")) == free
    assert engine.count_prompt_tokens(replace(base, tool_choice="none")) == free
    assert free > engine.count_prompt_tokens(replace(base, tools=tools[:1]))  # every tool is in it
