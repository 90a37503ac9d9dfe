"""The window as an agent host: the Tools page (an mcp.json pasted, a server enabled, its state and tools; masked
values; a damaged file), and the whole loop on the starter under a tool template with a real MCP server: a card
per call answered Allow once / Allow for this chat / Deny, a call cancelled mid-run, the rounds kept with the reply
across a restart, and a regenerate that runs the loop again on a new branch."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from agent_models import family_models  # noqa: E402
from window_fixtures import send  # noqa: E402

from app.tools.agent_loop import DENIED  # noqa: E402
from app.tools.mcp_config import MASK  # noqa: E402
from app.tools.mcp_host import READY  # noqa: E402
from ui.tasks import tasks_running  # noqa: E402

SERVERS = str(Path(__file__).with_name("mcp_servers.py"))
PASTED = {"mcpServers": {"tools": {"command": sys.executable, "args": [SERVERS, "tools"],
                                   "env": {"API_KEY": "sk-secret"}}}}
MODEL = "smol-hermes"


@pytest.fixture(scope="module")
def hermes(smollm2_path, tmp_path_factory):
    return family_models(smollm2_path, tmp_path_factory.mktemp("agent"), [MODEL])[MODEL]


def _enable(qtbot, w, name="tools"):
    page = w.tools_page
    item = next(page.servers.item(i) for i in range(page.servers.count())
                if page.servers.item(i).data(256) == name)
    from PySide6.QtCore import Qt

    item.setCheckState(Qt.CheckState.Checked)
    qtbot.waitUntil(lambda: w.tools.state(name).status == READY, timeout=60_000)


def test_a_pasted_mcp_json_adds_its_servers_off_and_enabling_one_starts_it(qtbot, make_window):
    w = make_window()
    page = w.tools_page
    assert page.paste(json.dumps(PASTED)) == 1 and "each off until you enable it" in page.notice.text()
    assert w.tools.state("tools").status == "off"  # pasted: nothing started
    _enable(qtbot, w)
    qtbot.waitUntil(lambda: "Ready" in page.servers.item(0).text(), timeout=10_000)
    page.servers.setCurrentRow(0)
    details = page.details.text()
    assert "add" in details and "megabyte" in details
    assert f"API_KEY={MASK}" in details and "sk-secret" not in details  # the value masked
    assert json.loads((w.store.path.parent / "mcp.json").read_text())["mcpServers"]["tools"]["env"] == \
        {"API_KEY": "sk-secret"}  # kept as the user gave it
    assert page.paste("{broken") == 0 and "not an mcp.json" in page.notice.text()


def test_a_damaged_mcp_json_is_moved_aside_and_the_window_starts(qtbot, make_window, tmp_path):
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "mcp.json").write_text('{"mcpServers": ')
    w = make_window()
    assert w.tools.servers() == [] and list((tmp_path / "data").glob("mcp.json.damaged-*"))
    assert "No MCP servers yet" in w.tools_page.details.text()


def _answer_first_card(qtbot, w, button: str):
    """Wait for a card asking, and press one of its buttons."""
    def asking():
        view = w.chat.views()[-1]
        return next((c for c in view.cards.values() if c.allow_once.isVisible()), None)

    qtbot.waitUntil(lambda: asking() is not None, timeout=120_000)
    card = asking()
    getattr(card, button).click()
    return card


def _agent_window(qtbot, make_window, hermes, *, plan):
    w = make_window(max_tokens=120)
    w.library.import_path(hermes, link=True, name=MODEL)
    w.tools_page.paste(json.dumps(PASTED))
    _enable(qtbot, w)
    with qtbot.waitSignal(w.models.sig_model_loaded, timeout=180_000):
        w.load_model(MODEL)
    w.chat.tool_rounds_plan = plan
    return w


def _named_then_text(name):
    return lambda i: {"tool_name": name, "tool_choice": "required", "parallel_tool_calls": False} if i == 0 else \
        {"tool_choice": "none"}


def test_a_call_is_shown_allowed_run_and_kept_with_the_reply_across_a_restart(qtbot, make_window, hermes):
    w = _agent_window(qtbot, make_window, hermes, plan=_named_then_text("add"))
    w.chat.input.setPlainText("What is 2 plus 3? Use the add tool.")
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=180_000) as done:
        w.chat.send()
        card = _answer_first_card(qtbot, w, "allow_once")
    assert done.args[0] == "done"
    qtbot.waitUntil(lambda: tasks_running() == 0, timeout=30_000)
    assert card.status.text() == "Done" and card.result_toggle.isVisible() and "Result" in card.result_toggle.text()
    assert not card.result.isVisible()  # folded until opened
    reply = w.store.messages(w.chat.conversation_id)[-1]
    call = reply.tools[0]["calls"][0]
    assert (call["tool"], call["status"], call["result"]) == ("add", "done", "5")
    first, second = reply.stats["tool_rounds"]  # each round's computed prompt tokens, in the reply's figures
    assert 0 < second < first
    from ui.message_view import figures_details

    assert f"prompt tokens computed in each: {first}, {second}" in figures_details(reply.stats)
    assert reply.content and reply.status == "done"
    chat = w.chat.conversation_id
    w.close()
    again = make_window(max_tokens=120)  # the app started again: the rounds come back with the reply
    again.chat.open_conversation(chat)
    view = again.chat.views()[-1]
    assert [c.status.text() for c in view.cards.values()] == ["Done"]
    assert not any(c.allow_once.isVisible() for c in view.cards.values())


def test_deny_and_allow_for_this_chat(qtbot, make_window, hermes):
    w = _agent_window(qtbot, make_window, hermes, plan=_named_then_text("add"))
    w.chat.input.setPlainText("Add 1 and 2 with the tool.")
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=180_000):
        w.chat.send()
        _answer_first_card(qtbot, w, "deny")
    denied = w.store.messages(w.chat.conversation_id)[-1].tools[0]["calls"][0]
    assert denied["status"] == "denied" and denied["result"] == DENIED

    w.chat.input.setPlainText("Now add 3 and 4 with the tool.")
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=180_000):
        w.chat.send()
        _answer_first_card(qtbot, w, "allow_chat")
    w.chat.input.setPlainText("And 5 and 6.")
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=180_000):
        w.chat.send()  # allowed for this chat: no card asks
    last = w.store.messages(w.chat.conversation_id)[-1].tools[0]["calls"][0]
    assert last["status"] == "done" and not any(c.allow_once.isVisible() for c in w.chat.views()[-1].cards.values())
    qtbot.waitUntil(lambda: tasks_running() == 0, timeout=30_000)


def test_a_running_call_is_cancelled_from_its_card_and_the_chat_goes_on(qtbot, make_window, hermes):
    w = _agent_window(qtbot, make_window, hermes, plan=_named_then_text("hang"))
    w.chat.input.setPlainText("Call the hang tool.")
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=180_000):
        w.chat.send()
        card = _answer_first_card(qtbot, w, "allow_once")
        qtbot.waitUntil(lambda: card.cancel.isVisible(), timeout=30_000)
        card.cancel.click()
    call = w.store.messages(w.chat.conversation_id)[-1].tools[0]["calls"][0]
    assert call["status"] == "cancelled" and "cancelled" in call["result"]
    assert w.tools.state("tools").status == READY
    qtbot.waitUntil(lambda: tasks_running() == 0, timeout=30_000)


def test_regenerate_runs_the_loop_again_on_a_new_branch(qtbot, make_window, hermes):
    w = _agent_window(qtbot, make_window, hermes, plan=_named_then_text("add"))
    assert w.chat.effective_settings().tools == ["*"]
    w.chat.input.setPlainText("What is 2 plus 3?")
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=180_000):
        w.chat.send()
        _answer_first_card(qtbot, w, "allow_once")
    first = w.store.messages(w.chat.conversation_id)[-1]
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=180_000):
        w.chat.regenerate(first.id)
        _answer_first_card(qtbot, w, "allow_once")
    second = w.store.messages(w.chat.conversation_id)[-1]
    assert second.id != first.id and w.store.variants(second.id) == [first.id, second.id]
    assert second.tools[0]["calls"][0]["result"] == "5"
    qtbot.waitUntil(lambda: tasks_running() == 0, timeout=30_000)


def test_a_chat_offers_all_none_or_chosen_tools_and_the_meter_counts_them(qtbot, make_window, hermes):
    w = _agent_window(qtbot, make_window, hermes, plan=None)
    w.chat.new_chat()
    w.chat.input.setPlainText("Hello")
    panel = w.chat.chat_settings
    w.chat.settings_button.setChecked(True)
    assert panel.tools.currentData() == "all" and "tools/add" in panel._tool_names

    def counted():
        w.chat.meter.counted = None
        w.chat.count_context()
        qtbot.waitUntil(lambda: w.chat.meter.counted is not None, timeout=60_000)
        return w.chat.meter.counted[0]

    with_tools = counted()
    panel.tools.setCurrentIndex(panel.tools.findData("none"))
    assert w.chat.effective_settings().tools == []
    without = counted()
    assert with_tools > without + 50  # the tool definitions take their room in the prompt
    panel.tools.setCurrentIndex(panel.tools.findData("chosen"))  # starts from every tool, each checked
    assert "tools/add" in w.chat.effective_settings().tools and len(w.chat.effective_settings().tools) > 1
    from PySide6.QtCore import Qt

    for i in range(panel.tool_list.count()):
        item = panel.tool_list.item(i)
        if item.text() != "tools/add":
            item.setCheckState(Qt.CheckState.Unchecked)
    assert w.chat.effective_settings().tools == ["tools/add"]
    assert [t.name for t in w.chat.toolbox(w.chat.effective_settings()).tools()] == ["add"]
    panel.tool_rounds.setValue(3)
    assert w.chat.effective_settings().tool_rounds == 3
    qtbot.waitUntil(lambda: tasks_running() == 0, timeout=30_000)


def _sent_requests(w) -> list:
    """The first round's request of every reply written through the agent loop from now on."""
    sent, real = [], w.chat.agent.start

    def record(worker, request, *args, **kwargs):
        sent.append(request)
        real(worker, request, *args, **kwargs)

    w.chat.agent.start = record
    return sent


def test_a_branch_from_a_reply_with_tool_rounds_keeps_them_in_what_the_model_reads(qtbot, make_window, hermes):
    w = _agent_window(qtbot, make_window, hermes, plan=_named_then_text("add"))
    w.chat.input.setPlainText("What is 2 plus 3?")
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=180_000):
        w.chat.send()
        _answer_first_card(qtbot, w, "allow_chat")
    first = w.store.messages(w.chat.conversation_id)[-1]
    w.chat.input.setPlainText("And 10 plus 10?")
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=180_000):
        w.chat.send()
    w.chat.branch_from(first.id)
    sent = _sent_requests(w)
    w.chat.input.setPlainText("Now 4 plus 4?")
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=180_000):
        w.chat.send()
    roles = [m["role"] for m in sent[0].messages]
    assert roles[-5:] == ["user", "assistant", "tool", "assistant", "user"]  # the first reply's call, result, answer
    call = first.tools[0]["calls"][0]
    assert sent[0].messages[-4]["tool_calls"][0]["id"] == call["id"]
    assert sent[0].messages[-3] == {"role": "tool", "tool_call_id": call["id"], "name": "add", "content": "5"}
    assert "10 plus 10" not in json.dumps(sent[0].messages)  # the later turn stays on its own branch
    assert len(w.store.variants(w.store.messages(w.chat.conversation_id)[-2].id)) == 2
    qtbot.waitUntil(lambda: tasks_running() == 0, timeout=30_000)


def test_the_documents_tool_searches_the_chats_attached_documents(qtbot, make_window, hermes):
    w = _agent_window(qtbot, make_window, hermes,
                      plan=lambda i: {"tool_name": "search_documents", "tool_choice": "required",
                                      "parallel_tool_calls": False} if i == 0 else {"tool_choice": "none"})
    w.tools_page.builtins["search_documents"].setChecked(True)
    assert w.settings.current.builtin_tools == ["search_documents"]
    w.chat.new_chat()
    w.chat.input.setPlainText("placeholder")
    chat = w.chat.conversation_id or w.store.create().id
    w.chat.open_conversation(chat)
    docs = w.chat.documents
    embeddings = docs.embeddings(w.models.worker, w.models.name)
    text = "The keeper winds the clockwork every four hours.\n\n" * 3 + "The lens floats on mercury.\n"
    file_id = docs.index.add("keeper.txt", text, embeddings)
    docs.index.keep_for_chat(chat, file_id, "keeper.txt")
    names = [t.name for t in w.chat.toolbox(w.chat.effective_settings()).tools()]
    assert "search_documents" in names
    w.chat.input.setPlainText("How often is the clockwork wound? Search the documents.")
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=180_000):
        w.chat.send()
        _answer_first_card(qtbot, w, "allow_once")
    call = w.store.messages(chat)[-1].tools[0]["calls"][0]
    assert (call["server"], call["tool"], call["status"]) == ("lantern", "search_documents", "done")
    assert "[keeper.txt" in call["result"] and "clockwork" in call["result"]
    qtbot.waitUntil(lambda: tasks_running() == 0, timeout=30_000)


def test_stop_while_a_call_waits_ends_the_reply_and_denies_it(qtbot, make_window, hermes):
    w = _agent_window(qtbot, make_window, hermes, plan=_named_then_text("add"))
    w.chat.input.setPlainText("Add 1 and 2 with the tool.")
    with qtbot.waitSignal(w.chat.sig_reply_done, timeout=180_000) as done:
        w.chat.send()
        qtbot.waitUntil(lambda: any(c.allow_once.isVisible() for c in w.chat.views()[-1].cards.values()),
                        timeout=120_000)
        w.chat.stop()  # the Stop button
    assert done.args[0] == "stopped"
    call = w.store.messages(w.chat.conversation_id)[-1].tools[0]["calls"][0]
    assert call["status"] == "denied" and not w.chat.busy
    qtbot.waitUntil(lambda: tasks_running() == 0, timeout=30_000)
