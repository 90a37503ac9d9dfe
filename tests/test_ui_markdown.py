"""Richer replies: LaTeX math drawn offline, bordered tables, quotes, bare URLs as links, long messages folded, times,
and a jump to the latest message (real widgets, offscreen)."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QUrl  # noqa: E402
from PySide6.QtGui import QTextDocument  # noqa: E402

from ui.markdown import math_svg, render_markdown  # noqa: E402
from ui.message_view import MessageView  # noqa: E402


def _images(doc: QTextDocument) -> list[str]:
    names, block = [], doc.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fmt = it.fragment().charFormat()
            if fmt.isImageFormat():
                names.append(fmt.toImageFormat().name())
            it += 1
        block = block.next()
    return names


@pytest.mark.parametrize("text, formulas", [
    (r"Euler: $e^{i\pi}+1=0$, and it costs $5 or $10.", 1),  # money stays text
    ("$$\n\\int_0^1 x^2\\,dx = \\frac{1}{3}\n$$", 1),
    (r"inline \(a^2+b^2=c^2\) too", 1),
    ("\\[\n\\sum_{k=1}^n k = \\frac{n(n+1)}{2}\n\\]", 1),
    ("`$not math$` and\n\n```\n$x$\n```", 0),  # code stays code
])
def test_math_is_drawn_as_images_and_code_stays_code(qtbot, text, formulas):
    view = MessageView("assistant", text, message_id=1)
    qtbot.addWidget(view)
    names = _images(view.body.document())
    assert len(names) == formulas and all(n.startswith("math:") for n in names)
    for name in names:
        image = view.body.loadResource(QTextDocument.ResourceType.ImageResource.value, QUrl(name))
        assert image is not None and not image.isNull() and image.width() > 10  # drawn from its SVG...
        inked = sum(image.pixelColor(x, y).alpha() > 0 for x in range(0, image.width(), 2)
                    for y in range(0, image.height(), 2))
        assert inked > 20  # ...with ink on it (Qt draws no SVG 2 <symbol>: an empty image looked fine)
        assert math_svg(name.split(":", 1)[1]).startswith("<svg")
    if "$5" in text:
        assert "$5 or $10" in view.body.toPlainText()


def test_bad_or_hostile_math_shows_its_source_and_nothing_loads_from_outside(qtbot, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not for a reply")
    text = (r"broken $\frac{1}{$ here, huge $" + "x+" * 2000 + "x$, and " + f"![x](file://{secret})"
            + " <img src='file:///etc/hostname'>")
    view = MessageView("assistant", text, message_id=1)
    qtbot.addWidget(view)
    plain = view.body.toPlainText()
    assert r"$\frac{1}{$" in plain and "x+x+" in plain  # shown as their source
    assert view.body.loadResource(QTextDocument.ResourceType.ImageResource.value, QUrl(f"file://{secret}")) is None
    assert not [n for n in _images(view.body.document()) if n.startswith("math:")]


def test_tables_have_borders_quotes_a_bar_and_bare_urls_are_links(qtbot, monkeypatch):
    html, _ = render_markdown("| a | b |\n|---|---|\n| 1 | 2 |\n\n> a quote\n\nsee https://example.com/docs.")
    assert '<table border="1"' in html and 'bgcolor=' in html
    assert '<a href="https://example.com/docs">https://example.com/docs</a>' in html
    opened = []
    from PySide6.QtGui import QDesktopServices

    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toString()))
    view = MessageView("assistant", "see https://example.com/docs.", message_id=1)
    qtbot.addWidget(view)
    view.body.anchorClicked.emit(QUrl("https://example.com/docs"))
    view.body.anchorClicked.emit(QUrl("file:///etc/passwd"))  # only the web opens
    assert opened == ["https://example.com/docs"]


def test_a_long_message_is_folded_and_every_message_says_when_it_was_written(qtbot):
    long = "\n".join(f"line {i}" for i in range(200))
    view = MessageView("user", long, message_id=1, created=time.time())
    qtbot.addWidget(view)
    view.resize(600, 400)
    view.show()
    qtbot.waitExposed(view)
    folded = view.body.height()
    assert view.expand_button.isVisible() and view.expand_button.text() == "Show all (200 lines)"
    assert folded < view.body.fontMetrics().lineSpacing() * 12
    view.expand_button.click()
    assert view.body.height() > folded * 10 and view.expand_button.text() == "Show less"
    assert view.time_label.text() == time.strftime("%H:%M") and "20" in view.time_label.toolTip()
    short = MessageView("user", "Hi", message_id=2, created=time.time() - 40 * 86400)
    qtbot.addWidget(short)
    assert not short.expand_button.isVisibleTo(short) and "," in short.time_label.text()  # "3 Nov, 14:03"


def test_a_long_reply_opens_whole_and_folds_once_it_is_written(qtbot):
    reply = MessageView("assistant", "", message_id=3, status="streaming")
    qtbot.addWidget(reply)
    reply.resize(600, 400)
    reply.show()
    qtbot.waitExposed(reply)
    for i in range(120):
        reply.append(f"- point {i}\n")
    assert not reply.expand_button.isVisibleTo(reply)  # nothing folds while it streams in
    reply.finish("done")
    whole = reply.body.height()
    assert reply.expand_button.isVisibleTo(reply) and reply.expand_button.text() == "Show less"
    assert whole > reply.body.fontMetrics().lineSpacing() * 60  # opened whole: it is what was asked for
    reply.expand_button.click()
    assert reply.body.height() < whole / 5 and reply.expand_button.text() == "Show all (121 lines)"
    short = MessageView("assistant", "A short answer.", message_id=4)
    qtbot.addWidget(short)
    assert not short.expand_button.isVisibleTo(short)


def test_jump_to_latest_shows_when_the_end_is_out_of_sight(qtbot, make_window):
    w = make_window()
    c = w.store.create("Long")
    for i in range(30):
        w.store.add(c.id, "user" if i % 2 == 0 else "assistant", f"Message {i}\n\n" + "words " * 80)
    w.chat.sidebar.refresh()
    w.chat.open_conversation(c.id)
    bar = w.chat.scroll.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0 and bar.value() == bar.maximum(), timeout=10_000)
    assert not w.chat.latest_button.isVisible()  # an opened chat shows its end
    bar.setValue(0)  # the user scrolls up
    assert w.chat.latest_button.isVisible()
    w.chat.latest_button.click()
    qtbot.waitUntil(lambda: bar.value() == bar.maximum(), timeout=10_000)
    assert not w.chat.latest_button.isVisible()
