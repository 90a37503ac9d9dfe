"""One tool call in a reply: the server, the tool and its arguments (pretty JSON); while it waits for the user, Allow
once / Allow for this chat / Deny; while it runs, a busy bar and Cancel; then its result, folded, with its size and
time. The result is untrusted text: shown as plain text, never as Markdown or HTML."""
from __future__ import annotations

import json

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar, QPushButton, QToolButton,
                               QVBoxLayout)

from app.tools.agent_loop import ALLOW_FOR_CHAT, ALLOW_ONCE, DENY

STATUS_WORDS = {"asked": "Waiting for your answer", "allowed": "Allowed", "running": "Running…", "done": "Done",
                "failed": "Failed", "denied": "Denied", "cancelled": "Cancelled"}


class ToolCallCard(QFrame):
    sig_answered = Signal(str, str)  # the call's id, and once / chat / deny
    sig_cancel_requested = Signal(str)  # the call's id

    def __init__(self, call: dict, parent=None):
        super().__init__(parent)
        self.call_id = call["id"]
        self.setObjectName("tool-call")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(4)
        server, tool = call.get("server") or "?", call.get("tool") or call.get("name", "?")
        self.title = QLabel(f"<b>{_escape(tool)}</b> &nbsp;<span style='color: gray'>on {_escape(server)}</span>")
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.status = QLabel(self)
        self.status.setAccessibleName("The call's state")
        head = QHBoxLayout()
        head.addWidget(self.title)
        head.addStretch(1)
        head.addWidget(self.status)
        layout.addLayout(head)
        self.arguments = QPlainTextEdit(_pretty(call.get("arguments")), self)
        self.arguments.setReadOnly(True)
        self.arguments.setAccessibleName("The call's arguments")
        self.arguments.setStyleSheet("font-family: monospace")
        _fit(self.arguments, 160)
        layout.addWidget(self.arguments)

        self.buttons = QHBoxLayout()
        self.allow_once = QPushButton("Allow once", self)
        self.allow_chat = QPushButton("Allow for this chat", self)
        self.deny = QPushButton("Deny", self)
        for button, answer in ((self.allow_once, ALLOW_ONCE), (self.allow_chat, ALLOW_FOR_CHAT), (self.deny, DENY)):
            button.clicked.connect(lambda _=False, a=answer: self.sig_answered.emit(self.call_id, a))
            self.buttons.addWidget(button)
        self.buttons.addStretch(1)
        layout.addLayout(self.buttons)

        self.busy = QProgressBar(self)
        self.busy.setRange(0, 0)  # moving: the tool runs
        self.busy.setMaximumHeight(6)
        self.busy.setTextVisible(False)
        self.busy.setAccessibleName("The tool is running")
        self.cancel = QPushButton("Cancel", self)
        self.cancel.clicked.connect(lambda: self.sig_cancel_requested.emit(self.call_id))
        running = QHBoxLayout()
        running.addWidget(self.busy, 1)
        running.addWidget(self.cancel)
        layout.addLayout(running)

        self.result_toggle = QToolButton(self, checkable=True)
        self.result_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.result_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.result_toggle.setAutoRaise(True)
        self.result_toggle.toggled.connect(self._fold)
        self.result = QPlainTextEdit(self)  # plain text: a result can never be markup
        self.result.setReadOnly(True)
        self.result.setAccessibleName("The tool's result")
        layout.addWidget(self.result_toggle)
        layout.addWidget(self.result)
        self.set_state(call)

    def set_state(self, call: dict) -> None:
        status = call.get("status", "asked")
        self.status.setText(STATUS_WORDS.get(status, status))
        asked, running = status == "asked", status in ("allowed", "running")
        for w in (self.allow_once, self.allow_chat, self.deny):
            w.setVisible(asked)
        self.busy.setVisible(running)
        self.cancel.setVisible(running)
        has_result = status in ("done", "failed", "denied", "cancelled") and call.get("result") is not None
        self.result_toggle.setVisible(has_result)
        if has_result:
            text = str(call.get("result", ""))
            size = call.get("size") or len(text)
            self.result_toggle.setText(f"Result · {_size(size)} · {float(call.get('seconds') or 0):.1f} s"
                                       + (" · cut" if call.get("cut") else ""))
            self.result.setPlainText(text)
            _fit(self.result, 220)
        self.result.setVisible(has_result and self.result_toggle.isChecked())

    def _fold(self, open_: bool) -> None:
        self.result_toggle.setArrowType(Qt.ArrowType.DownArrow if open_ else Qt.ArrowType.RightArrow)
        self.result.setVisible(open_)


def _fit(box: QPlainTextEdit, most: int) -> None:
    """As tall as its text (wrapped lines counted roughly), up to `most` pixels; it scrolls beyond."""
    lines = sum(1 + len(line) // 90 for line in box.toPlainText().split("\n"))
    margins = 2 * (box.document().documentMargin() + box.frameWidth()) + 6
    box.setFixedHeight(int(min(most, lines * box.fontMetrics().lineSpacing() + margins)))


def _pretty(arguments) -> str:
    if isinstance(arguments, str):
        return arguments
    try:
        return json.dumps(arguments, indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(arguments)


def _size(n: int) -> str:
    return f"{n:,} characters" if n < 10_000 else f"{n / 1000:,.0f}k characters"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
