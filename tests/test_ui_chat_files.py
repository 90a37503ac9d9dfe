"""The window's right-click menus on chats and messages, export of a chat and of every chat, and import, on the real
starter model."""
from __future__ import annotations

import json
import zipfile

import pytest

pytest.importorskip("pytestqt")

from ui import dialogs  # noqa: E402
from ui.tasks import tasks_running  # noqa: E402
from window_fixtures import send, stored  # noqa: E402


def _trigger(menu, text: str) -> None:
    action = next(a for a in menu.actions() if a.text() == text)
    assert action.isEnabled(), text
    action.trigger()


def test_a_chat_is_exported_and_imported_from_its_menus(qtbot, make_window, tmp_path, monkeypatch):
    w = make_window(max_tokens=16)
    assert send(qtbot, w, "Hi") == "done"
    first = w.chat.conversation_id
    item = w.chat.sidebar.chat_item(0)
    for kind, name in (("Markdown", "chat.md"), ("JSON", "chat.json")):
        monkeypatch.setattr(dialogs, "save_path", lambda *a, name=name: tmp_path / name)
        _trigger(w.chat.sidebar.menu_for(item), f"Export as {kind}…")
        qtbot.waitUntil(lambda name=name: name in w.chat.notice.text(), timeout=30_000)
    markdown = (tmp_path / "chat.md").read_text()
    reply = stored(w)[1][1]
    assert markdown.startswith("# Hi\n") and "## You\n\nHi" in markdown and reply in markdown
    doc = json.loads((tmp_path / "chat.json").read_text())
    assert [(m["role"], m["content"]) for m in doc["messages"]] == [("user", "Hi"), ("assistant", reply)]
    assert doc["messages"][1]["lantern"]["stats"]["model"] == "smollm2-135m-instruct"

    monkeypatch.setattr(dialogs, "save_path", lambda *a: tmp_path / "all.zip")
    _trigger(w.chat.sidebar.more_button.menu(), "Export all chats…")
    qtbot.waitUntil(lambda: "Saved 1 chat " in w.chat.notice.text(), timeout=30_000)
    assert len(zipfile.ZipFile(tmp_path / "all.zip").namelist()) == 2

    monkeypatch.setattr(dialogs, "open_path", lambda *a: tmp_path / "chat.json")
    _trigger(w.chat.sidebar.more_button.menu(), "Import chats…")
    qtbot.waitUntil(lambda: len(w.chat.sidebar.ids()) == 2, timeout=30_000)
    assert w.chat.notice.text() == "Imported 1 chat (2 messages)."
    assert w.chat.conversation_id != first and [v.text for v in w.chat.views()] == ["Hi", reply]

    (tmp_path / "broken.json").write_text('{"messages": ')
    monkeypatch.setattr(dialogs, "open_path", lambda *a: tmp_path / "broken.json")
    _trigger(w.chat.sidebar.more_button.menu(), "Import chats…")
    qtbot.waitUntil(lambda: w.chat.notice.text().startswith("Import failed: broken.json is not JSON"), timeout=30_000)
    assert len(w.chat.sidebar.ids()) == 2 and tasks_running() == 0


def test_branch_from_here_and_delete_from_the_message_menu(qtbot, make_window, monkeypatch):
    w = make_window(max_tokens=16)
    assert send(qtbot, w, "Hi") == "done"
    assert send(qtbot, w, "What is two plus two?") == "done"
    first_reply = w.chat.views()[1]
    assert [a.text() for a in first_reply.menu().actions() if a.text()] == [
        "Copy message", "Branch from here", "Delete from here…"]
    _trigger(first_reply.menu(), "Branch from here")
    assert len(w.chat.views()) == 2 and "new branch" in w.chat.notice.text()
    assert send(qtbot, w, "Tell me a colour.") == "done"
    question = w.chat.views()[2]
    assert question.text == "Tell me a colour." and question.variant_label.text() == "2/2"
    question.previous_variant.click()
    assert w.chat.views()[2].text == "What is two plus two?"  # the old turns kept on their branch

    monkeypatch.setattr(dialogs, "confirm", lambda *a: True)
    _trigger(w.chat.views()[2].menu(), "Delete from here…")
    assert [v.text for v in w.chat.views()][2] == "Tell me a colour."  # the branch beside it shows
    assert w.chat.views()[2].variant_label.isHidden()
    _trigger(w.chat.views()[1].menu(), "Delete from here…")
    assert [v.role for v in w.chat.views()] == ["user"]
    assert len(w.store.all_messages(w.chat.conversation_id)) == 1
