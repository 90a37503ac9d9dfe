"""Images in the window, on the starter model with a tiny random-weight projector beside it (tests/vision_model.py):
the Image button and drops attach them like files, the model's projector counts them, they are kept with the chat
by their SHA-256 and reach every later request as the same image (its KV cache reused)."""
from __future__ import annotations

import hashlib
import os

import pytest

pytest.importorskip("pytestqt")

from ui import dialogs  # noqa: E402
from vision_model import png_bytes, write_projector  # noqa: E402
from window_fixtures import send, stored  # noqa: E402


@pytest.fixture
def seeing_model(tmp_path, smollm2_path):
    folder = tmp_path / "seeing"
    folder.mkdir()
    os.symlink(smollm2_path, folder / "smol.gguf")
    write_projector(folder / "mmproj-smol-f16.gguf", n_embd_text=576)
    return str(folder / "smol.gguf")


def test_an_image_goes_with_the_message_to_a_model_that_sees(qtbot, make_window, tmp_path, seeing_model,
                                                               monkeypatch):
    w = make_window(model=seeing_model, max_tokens=6, n_ctx=1024)
    assert send(qtbot, w, "Hi") == "done"
    qtbot.waitUntil(lambda: w.chat.model_sees is True, timeout=30_000)
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes())
    meter = w.chat.meter
    w.chat.input.setPlainText("What is in it?")
    qtbot.waitUntil(lambda: meter.counted is not None and meter.counted[0] > 1, timeout=60_000)
    qtbot.wait(600)  # past the meter's pause after typing
    text_only = meter.counted[0]
    monkeypatch.setattr(dialogs, "open_paths", lambda *a: [photo])
    w.chat.image_button.click()
    [chip] = w.chat.attachments.chips()
    qtbot.waitUntil(lambda: chip.tokens is not None, timeout=60_000)
    assert chip.text().startswith("🖼 photo.png · 4 image tokens")  # 16x16 in 8x8 patches
    qtbot.waitUntil(lambda: meter.counted[0] == text_only + 4, timeout=60_000)  # the meter counts it too
    assert send(qtbot, w, "What is in it?") == "done"
    role, content, _ = stored(w)[-2]
    digest = hashlib.sha256(photo.read_bytes()).hexdigest()
    assert role == "user" and content == f'<image sha256="{digest}" name="photo.png"/>\nWhat is in it?'
    kept = w.chat.images.folder / digest
    assert kept.read_bytes() == photo.read_bytes()  # kept with the chats, whatever happens to the file
    view = w.chat.views()[-2]
    bubble = view.body.toPlainText()
    assert bubble.lstrip("\ufffc\n").startswith("Image: photo.png") and bubble.endswith("What is in it?")
    assert "sha256" not in bubble
    from PySide6.QtCore import QUrl
    from PySide6.QtGui import QTextDocument

    thumbnail = view.body.document().resource(QTextDocument.ResourceType.ImageResource, QUrl(f"lantern-image:{digest}"))
    assert thumbnail is not None and thumbnail.width() == 160  # shown small, from the chat's own copy
    first = w.store.messages(w.chat.conversation_id)[-1].stats
    assert first["prompt_tokens"] == text_only + 4
    photo.unlink()
    assert send(qtbot, w, "And its colours?") == "done"
    second = w.store.messages(w.chat.conversation_id)[-1].stats
    # the image (still read from the chat's own copy) and the turn before are reused from the cache
    assert second["cached_tokens"] >= first["prompt_tokens"]
    assert w.chat.attachments.chips() == []

    from PySide6.QtCore import QMimeData
    from PySide6.QtGui import QImage

    mime = QMimeData()
    mime.setImageData(QImage(str(kept)))  # a screenshot pasted: attached as a PNG kept in Lantern's folder
    w.chat.input.insertFromMimeData(mime)
    [pasted] = w.chat.attachments.chips()
    qtbot.waitUntil(lambda: pasted.tokens is not None, timeout=60_000)
    assert pasted.path.parent == w.chat.images.folder / "pasted" and pasted.text().startswith("🖼 pasted-")
    assert w.chat.input.toPlainText() == ""
    pasted.click()

    kept.write_bytes(b"damaged")  # no longer the image it was: said to the model, never sent as another image
    history = w.chat._history()
    [parts] = [m["content"] for m in history if isinstance(m["content"], list)]
    assert parts == [{"type": "text", "text": "[photo.png: image no longer on this computer]\nWhat is in it?"}]


def test_a_model_that_cannot_see_says_so_on_the_button_and_the_chip(qtbot, make_window, tmp_path):
    w = make_window(max_tokens=8)
    assert send(qtbot, w, "Hi") == "done"
    qtbot.waitUntil(lambda: w.chat.model_sees is False, timeout=30_000)
    w.chat.image_button.click()
    assert w.chat.notice.text().startswith("smollm2-135m-instruct cannot see images. Models that see images")
    assert "mmproj" in w.chat.notice.text()
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0" + bytes(200))
    w.chat.attach([photo])
    [chip] = w.chat.attachments.chips()
    qtbot.waitUntil(lambda: bool(chip.error), timeout=30_000)
    assert "smollm2-135m-instruct cannot see images" in chip.text()
    n = len(stored(w))
    w.chat.input.setPlainText("What is in it?")
    w.chat.send_button.click()
    assert "photo.jpg" in w.chat.notice.text() and len(stored(w)) == n  # nothing sent
