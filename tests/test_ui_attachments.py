"""Attaching files in the window on the real starter model: by button, drop or paste, a chip with the file's tokens,
the file in the message the model reads, and every bad case a message on its chip with nothing sent."""
from __future__ import annotations

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
    assert "Eddystone" not in bubble and w.chat.views()[-2].text == content  # Copy gives it all

    n = len(stored(w))
    binary = tmp_path / "photo.txt"
    binary.write_bytes(b"\x89PNG\x00\x00" + bytes(100))
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

    w.chat.attachments.clear()
    big = tmp_path / "long.txt"
    big.write_text("lighthouse keeper " * 1500)  # about 3,000 tokens: more than the 1,024-token context
    w.chat.attach([big])
    qtbot.waitUntil(lambda: bool(w.chat.attachments.chips()[0].error), timeout=60_000)
    assert "more than this model's context (1,024)" in w.chat.attachments.chips()[0].text()
