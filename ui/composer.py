"""The box to write in: the files attached above it, and under it attach, image and this chat's settings on the left,
Stop and Send on the right. The chat page connects its parts."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QPlainTextEdit, QToolButton, QVBoxLayout

from ui.attachment_bar import AttachmentBar
from ui.icons import set_icon
from ui.theme import SPACE


class MessageInput(QPlainTextEdit):
    """Enter sends; Shift+Enter makes a new line; files dropped or pasted are attached."""

    sig_send_requested = Signal()
    sig_files_given = Signal(list)  # paths of local files dropped or pasted

    sig_image_pasted = Signal(object)  # a QImage pasted (a screenshot), not a file

    def canInsertFromMimeData(self, source) -> bool:
        return source.hasUrls() or source.hasImage() or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source) -> None:
        files = [Path(u.toLocalFile()) for u in source.urls() if u.isLocalFile()] if source.hasUrls() else []
        if files:
            self.sig_files_given.emit(files)
        elif source.hasImage():
            self.sig_image_pasted.emit(source.imageData())
        else:
            super().insertFromMimeData(source)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and \
                not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self.sig_send_requested.emit()
            return
        super().keyPressEvent(event)


class Composer(QFrame):
    """The message box, its attachments and its buttons (created in the window's tab order)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("composer")
        self.input = MessageInput(self)
        self.input.setPlaceholderText("Write a message (Enter sends, Shift+Enter for a new line)")
        self.input.setAccessibleName("Message")
        self.input.setFixedHeight(self.input.fontMetrics().lineSpacing() * 3 + 12)
        self.input.setTabChangesFocus(True)  # Tab reaches Send, Stop and the messages' actions
        self.attachments = AttachmentBar(self)
        self.attach_button = composer_button(self, "Attach", "attach", "Attach files")
        self.attach_button.setToolTip("Attach text, Markdown, code, CSV, JSON, HTML, PDF or Word files (or drop them "
                                      "on the message box)")
        self.image_button = composer_button(self, "Image", "image", "Attach an image")
        self.image_button.setToolTip("Attach an image (for models that see)")
        self.send_button = composer_button(self, "Send", "send", "Send")
        self.send_button.setObjectName("send")
        self.send_button.setToolTip("Send (Enter)")
        set_icon(self.send_button, "send", "accent_text")
        self.stop_button = composer_button(self, "Stop", "stop", "Stop the reply")
        self.stop_button.setToolTip("Stop the reply")
        self.stop_button.setEnabled(False)
        self.settings_button = QToolButton(self, checkable=True)
        self.settings_button.setText("Chat settings")
        self.settings_button.setAccessibleName("This chat's settings")
        self.settings_button.setToolTip("A preset, the system prompt and sampling for this chat only")
        set_icon(self.settings_button, "settings")
        self.settings_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        tools = QHBoxLayout()
        tools.setSpacing(SPACE["xs"])
        for button in (self.attach_button, self.image_button, self.settings_button):
            tools.addWidget(button)
        tools.addStretch(1)
        tools.addWidget(self.stop_button)
        tools.addWidget(self.send_button)
        inside = QVBoxLayout(self)
        inside.setContentsMargins(SPACE["s"], SPACE["s"], SPACE["s"], SPACE["s"])
        inside.setSpacing(SPACE["xs"])
        inside.addWidget(self.attachments)
        inside.addWidget(self.input)
        inside.addLayout(tools)


def composer_button(parent, text: str, icon_name: str, accessible: str) -> QToolButton:
    """An icon button inside the composer (its text is for screen readers and tests)."""
    button = QToolButton(parent)
    button.setText(text)
    button.setAccessibleName(accessible)
    button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
    button.setIconSize(QSize(18, 18))
    button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
    set_icon(button, icon_name)
    return button
