"""The chat's look, as pixels and geometry in a real window (offscreen) on the real starter model: who said what at
a glance, a readable column, icons in the theme's colour, an empty chat that says what to do, the dots while the
model has not written yet, and the model's name on each reply."""
from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtGui import QColor  # noqa: E402
from PySide6.QtWidgets import QAbstractButton, QApplication  # noqa: E402

from window_fixtures import REPLY_TIMEOUT, send  # noqa: E402
from ui.theme import LOOK, apply_theme  # noqa: E402


def inside(widget, x: int = -6) -> QColor:
    """The colour at `x` (from the right when negative) halfway down the widget, where no text is, as drawn on
    the page."""
    image = widget.parentWidget().grab(widget.geometry()).toImage()
    return image.pixelColor(x % image.width(), image.height() // 2)


def near(a: QColor, b: str) -> bool:
    b = QColor(b)
    return max(abs(a.red() - b.red()), abs(a.green() - b.green()), abs(a.blue() - b.blue())) <= 6


def test_your_messages_and_replies_look_different_in_both_themes(qtbot, make_window):
    w = make_window()
    assert send(qtbot, w, "Hello") == "done"
    user, reply = w.chat.views()
    try:
        for theme in ("light", "dark"):
            w.settings.update(theme=theme)
            w._settings_changed(w.settings.current)
            QApplication.processEvents()
            colours = LOOK[theme]
            assert near(inside(user), colours["bubble"]), theme  # the user's words in a tinted bubble
            assert near(inside(reply), colours["page"]), theme  # the reply on the page itself
            assert near(inside(user, 20), colours["page"]), theme  # the bubble set in from the left
    finally:
        apply_theme("light")


def test_messages_keep_a_readable_line_length_centred_in_a_wide_window(qtbot, make_window):
    w = make_window()
    w.resize(1700, 800)
    assert send(qtbot, w, "Write two long paragraphs about the sea.") == "done"
    QApplication.processEvents()
    reply = w.chat.views()[-1]
    chars = reply.body.viewport().width() / reply.body.fontMetrics().averageCharWidth()
    assert 60 <= chars <= 90, chars  # about 80 characters a line, not 1,600 px of text
    area = w.chat.scroll.viewport()
    column = w.chat.column.geometry()
    left, right = column.left(), area.width() - column.right()
    assert abs(left - right) <= 20 and left > 200  # in the middle of the page
    w.resize(640, 600)  # a narrow window: the column shrinks with it rather than being cut
    QApplication.processEvents()
    assert w.chat.column.width() <= area.width()


def test_every_action_has_an_icon_drawn_in_the_theme_colour(qtbot, make_window):
    w = make_window()
    assert send(qtbot, w, "Hi") == "done"
    buttons = [w.chat.send_button, w.chat.stop_button, w.chat.sidebar.new_button, w.chat.sidebar.delete_button,
               w.load_button, w.unload_button] + [b for v in w.chat.views() for b in v.findChildren(QAbstractButton)
                                                  if b.property("lantern_icon")]
    assert len(buttons) >= 10 and all(not b.icon().isNull() for b in buttons)

    def ink(button) -> int:
        """The lightness of the darkest (light theme) or lightest (dark theme) pixel of the icon."""
        image = button.icon().pixmap(24, 24).toImage()
        values = [image.pixelColor(x, y).lightness() for x in range(24) for y in range(24)
                  if image.pixelColor(x, y).alpha() > 200]
        return sum(values) // len(values)

    try:
        light = ink(w.chat.views()[-1].copy_button)
        w.settings.update(theme="dark")
        w._settings_changed(w.settings.current)
        dark = ink(w.chat.views()[-1].copy_button)
        assert light < 100 < 160 < dark  # dark strokes on light, light strokes on dark
    finally:
        apply_theme("light")


def test_an_empty_chat_says_what_to_do_and_offers_examples(qtbot, make_window):
    w = make_window()
    empty = w.chat.empty
    assert empty.isVisible() and "smollm2-135m-instruct" in empty.hint.text() and "loads when" in empty.hint.text()
    empty.examples[1].click()
    assert "palindrome" in w.chat.input.toPlainText() and w.chat.input.hasFocus()
    assert send(qtbot, w, w.chat.input.toPlainText()) == "done"
    assert not empty.isVisible()  # the chat's messages in its place
    w.chat.new_chat()
    assert empty.isVisible() and "is ready" in empty.hint.text()  # the model loaded with the first message
    w.chat.open_conversation(w.chat.sidebar.ids()[0])
    assert not empty.isVisible()
    w.unload()
    qtbot.waitUntil(lambda: w.models.name is None, timeout=30_000)
    w.chat.new_chat()
    assert "loads when" in empty.hint.text()


def test_dots_move_until_the_first_word_and_each_reply_names_its_model(qtbot, make_window):
    w = make_window()
    w.chat.input.setPlainText("Hello")
    w.chat.send()
    reply = w.chat.views()[-1]
    QApplication.processEvents()  # the new view shown
    assert reply.typing.isVisible() and reply.typing.text() and reply._typing_clock.isActive()  # at once: loading
    seen = {reply.typing.text()}
    qtbot.waitUntil(lambda: seen.add(reply.typing.text()) or len(seen) > 1 or bool(reply.text), timeout=REPLY_TIMEOUT)
    assert len(seen) > 1 or reply.text  # they move (or the first word came first)
    assert reply.model_label.text() == "smollm2-135m-instruct"  # named while it is written
    qtbot.waitUntil(lambda: reply.status != "streaming", timeout=REPLY_TIMEOUT)
    assert not reply.typing.isVisible() and not reply._typing_clock.isActive()
    conversation = w.chat.conversation_id
    w.chat.new_chat()
    w.chat.open_conversation(conversation)
    assert w.chat.views()[-1].model_label.text() == "smollm2-135m-instruct"  # and after it is reopened
    assert not w.chat.views()[0].model_label.isVisible()  # the user's own messages carry no model


def test_settings_come_in_groups_and_each_says_what_it_does(qtbot, make_window):
    from PySide6.QtWidgets import QGroupBox

    from ui.settings_page import GROUPS

    w = make_window()
    page = w.settings_page
    keys = [key for _title, fields in GROUPS for key, _label, _tip in fields]
    assert sorted(keys) == sorted(page.widgets) and len(keys) == len(set(keys))  # each field once, none missing
    boxes = page.findChildren(QGroupBox)
    assert [b.title() for b in boxes] == [title for title, _ in GROUPS]
    for key, widget in page.widgets.items():
        assert len(widget.toolTip()) > 20, key  # a sentence, not a label again
        box = widget.parentWidget()
        assert isinstance(box, QGroupBox), key
        assert page.forms[key].labelForField(widget).toolTip() == widget.toolTip()


def test_the_picker_shows_size_quantization_and_context(qtbot, make_window, smollm2_path):
    from PySide6.QtCore import QRect
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtWidgets import QStyleOptionViewItem

    from ui.model_picker import DETAILS

    w = make_window()
    picker = w.picker
    index = picker.findText("smollm2-135m-instruct")
    details = picker.itemData(index, DETAILS)
    assert details.startswith(f"{smollm2_path.stat().st_size / 1e6:.0f} MB · Q4_1 · ") and "K context" in details
    assert "base model" in picker.details("gemma3-270m")  # a base model says so before it is picked
    picker.setCurrentIndex(index)
    assert details in picker.toolTip()

    def row(with_details: bool) -> QImage:
        """The open list's row for the starter model, as the picker's delegate draws it."""
        option = QStyleOptionViewItem()
        option.initFrom(picker.view())
        option.rect = QRect(0, 0, picker.view().minimumWidth(), 24)
        option.text = "smollm2-135m-instruct"
        model_index = picker.model().index(index, 0)
        if not with_details:
            picker.setItemData(index, "", DETAILS)
        image = QImage(option.rect.size(), QImage.Format.Format_ARGB32)
        image.fill(0)
        painter = QPainter(image)
        picker.itemDelegate().paint(painter, option, model_index)
        painter.end()
        picker.setItemData(index, details, DETAILS)
        return image

    shown, plain = row(True), row(False)
    half = shown.width() // 2
    right = [(x, y) for x in range(half, shown.width()) for y in range(24)]
    assert any(shown.pixelColor(x, y) != plain.pixelColor(x, y) for x, y in right)  # the details, drawn


def test_start_up_reopens_the_last_chat_and_loads_the_last_model(qtbot, make_window):
    from window_fixtures import close

    w = make_window()
    assert send(qtbot, w, "Remember me") == "done"
    w.chat.new_chat()
    w.chat.open_conversation(w.chat.sidebar.ids()[0])
    opened = w.chat.conversation_id
    close(w)
    again = make_window(restore=True)
    assert again.chat.conversation_id == opened and [v.text for v in again.chat.views()][0] == "Remember me"
    qtbot.waitUntil(lambda: again.models.name == "smollm2-135m-instruct", timeout=REPLY_TIMEOUT)  # loading, or loaded
    assert again.picker.currentText() == "smollm2-135m-instruct"
    again.unload()  # unloaded and on a new chat when quitting: nothing loads, nothing opens
    qtbot.waitUntil(lambda: again.models.name is None, timeout=30_000)
    again.chat.new_chat()
    close(again)
    third = make_window(restore=True)
    QApplication.processEvents()
    assert third.chat.conversation_id is None and third.chat.empty.isVisible()
    assert third.models.name is None and third.model_status.text() == "No model loaded."


def test_a_damaged_window_state_opens_a_fresh_window(qtbot, make_window, tmp_path):
    (tmp_path / "data").mkdir(parents=True, exist_ok=True)
    (tmp_path / "data" / "window.ini").write_bytes(b"[General]\nopen_chat=../../x\nloaded_model=@Invalid(\xff\x00\n")
    w = make_window(restore=True)
    QApplication.processEvents()
    assert w.chat.conversation_id is None and w.models.name is None
