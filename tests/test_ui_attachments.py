"""Attaching files in the window on the real starter model: by button, drop or paste, a chip with the file's tokens,
the file in the message the model reads, and every bad case a message on its chip with nothing sent."""
from __future__ import annotations

import random

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QUrl  # noqa: E402

from documents import text_pdf  # noqa: E402
from ui import dialogs  # noqa: E402
from window_fixtures import send, stored  # noqa: E402


def test_attached_files_reach_the_model_and_bad_ones_send_nothing(qtbot, make_window, tmp_path, monkeypatch):
    w = make_window(max_tokens=8, n_ctx=1024)
    assert send(qtbot, w, "Hi") == "done"  # the model is loaded: chips count tokens
    notes = tmp_path / "notes.md"
    notes.write_text("The Eddystone lighthouse stands on a rock off Plymouth.")
    pdf = text_pdf(tmp_path / "log.pdf", ["Fog at dawn", "Clear at noon"])
    monkeypatch.setattr(dialogs, "open_paths", lambda *a: [notes])
    w.chat.attach_button.click()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(pdf))])
    w.chat.input.insertFromMimeData(mime)  # a pasted (or dropped) file is attached, not typed
    assert w.chat.input.toPlainText() == ""
    chips = w.chat.attachments.chips()
    qtbot.waitUntil(lambda: all(c.tokens for c in chips), timeout=60_000)
    assert chips[0].text().startswith("notes.md · ") and "tokens" in chips[0].text()
    assert chips[1].text().startswith("log.pdf, 2 pages · ")
    before = w.chat.meter.counted
    w.chat.input.setPlainText("Where does it stand?")
    qtbot.waitUntil(lambda: w.chat.meter.counted != before, timeout=60_000)
    counted = w.chat.meter.counted[0]
    assert send(qtbot, w, "Where does it stand?") == "done"
    role, content, _ = stored(w)[-2]
    assert role == "user" and content.startswith('<document name="notes.md">\nThe Eddystone')
    assert '<document name="log.pdf">\n[page 1]\nFog at dawn' in content and content.endswith("Where does it stand?")
    assert w.store.messages(w.chat.conversation_id)[-1].stats["prompt_tokens"] == counted  # the meter counted them
    assert w.chat.attachments.chips() == [] and w.chat.attachments.isHidden()
    bubble = w.chat.views()[-2].body.toPlainText()  # the files as a line each, then the question
    assert bubble.startswith("Attached: notes.md · 1 line\nAttached: log.pdf · 5 lines") and bubble.endswith("Where does it stand?")
    from PySide6.QtCore import QUrl as Url

    view = w.chat.views()[-2]
    assert 'href="lantern-file:0"' in view.body.toHtml()  # each file line opens the file
    view.body.anchorClicked.emit(Url("lantern-file:1"))
    assert view.viewer.isVisible() and view.viewer.windowTitle() == "log.pdf"
    assert view.viewer.text.toPlainText() == "[page 1]\nFog at dawn\n\n[page 2]\nClear at noon"
    view.viewer.close()
    view.body.anchorClicked.emit(Url("lantern-file:7"))  # no such file: nothing opens
    assert not view.viewer.isVisible()
    assert "Eddystone" not in bubble and w.chat.views()[-2].text == content  # Copy gives it all

    n = len(stored(w))
    binary = tmp_path / "photo.txt"
    binary.write_bytes(b"\x00\x01\x02garbage\x00" + bytes(100))
    w.chat.attach([binary])
    chip = w.chat.attachments.chips()[0]
    qtbot.waitUntil(lambda: bool(chip.error), timeout=30_000)
    assert "photo.txt is not text" in chip.text()
    w.chat.input.setPlainText("What is in it?")
    w.chat.send_button.click()
    assert "photo.txt" in w.chat.notice.text() and len(stored(w)) == n and w.chat.input.toPlainText()
    chip.click()  # taken off
    assert w.chat.attachments.chips() == []

    gone = tmp_path / "gone.md"
    gone.write_text("soon gone")
    w.chat.attach([gone])
    qtbot.waitUntil(lambda: w.chat.attachments.chips()[0].file is not None, timeout=30_000)
    gone.unlink()  # after attaching, before sending
    w.chat.send_button.click()
    assert "gone.md is gone since it was attached" in w.chat.notice.text() and len(stored(w)) == n
    assert "gone since" in w.chat.attachments.chips()[0].text()


def test_a_file_larger_than_the_context_is_searched_with_its_sources_under_the_reply(qtbot, make_window, tmp_path):
    w = make_window(max_tokens=8, n_ctx=1024)
    assert send(qtbot, w, "Hi") == "done"  # the model is loaded: chips count tokens
    rng = random.Random(3)
    words = "river mountain engine budget garden window paper market signal winter copper orbit".split()
    lines = [" ".join(rng.choice(words) for _ in range(10)) + "." for _ in range(400)]
    lines[250] = "The keeper's cat is called Marmalade and sleeps on the lamp room stairs."
    big = tmp_path / "log.txt"
    big.write_text("\n".join(lines))  # about 8,000 tokens: eight times the context
    w.chat.attach([big])
    chip = w.chat.attachments.chips()[0]
    qtbot.waitUntil(lambda: chip.search, timeout=60_000)
    w.chat.input.setPlainText("What is the keeper's cat called?")
    w.chat.send_button.click()  # still being indexed: said, nothing sent
    assert "still being indexed" in w.chat.notice.text() and len(stored(w)) == 2
    qtbot.waitUntil(lambda: chip.searched is not None or bool(chip.error), timeout=240_000)
    assert not chip.error and f"searched ({chip.searched.parts:,} parts)" in chip.text()
    assert send(qtbot, w, "What is the keeper's cat called?") == "done"
    role, content, _ = stored(w)[-2]
    assert role == "user" and content.startswith(f'<document name="log.txt" excerpts="')
    assert "Marmalade" in content and content.endswith("What is the keeper's cat called?")
    assert w.store.messages(w.chat.conversation_id)[-1].stats["prompt_tokens"] < 1024  # it fitted
    question, reply = w.chat.views()[-2:]
    assert question.body.toPlainText().startswith("Searched: log.txt · ")
    assert reply.sources.isVisibleTo(w) and reply.sources.text().startswith("Sources: log.txt: line")
    [kept] = w.chat.attachments.chips()  # the chat keeps searching it
    assert kept.kept and "searched in this chat" in kept.text()

    assert send(qtbot, w, "Where does the cat sleep?") == "done"  # a later message is given its own excerpts
    content = stored(w)[-2][1]
    assert content.startswith('<document name="log.txt" excerpts="') and "stairs" in content
    chat = w.chat.conversation_id
    w.chat.new_chat()
    assert w.chat.attachments.chips() == []  # another chat's files are not this one's
    w.chat.open_conversation(chat)
    [kept] = w.chat.attachments.chips()
    kept.click()  # taken off the chat
    assert w.chat.attachments.chips() == [] and w.documents.index.chat_files(chat) == []
    assert send(qtbot, w, "Thanks") == "done" and stored(w)[-2][1] == "Thanks"
