"""The messages: one centred column about 80 characters wide (long lines are hard to read), in a scroll area that
follows the newest message, with the empty chat's welcome at its top."""
from __future__ import annotations

from PySide6.QtWidgets import QFrame, QHBoxLayout, QScrollArea, QVBoxLayout, QWidget

from ui.chat_follow import ScrollFollower
from ui.empty_state import EmptyState

COLUMN_CHARS = 80  # the messages' line length, in average characters


class MessageArea(QScrollArea):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.messages = QVBoxLayout()  # the message views, above a stretch
        self.messages.setSpacing(14)
        self.messages.addStretch(1)
        self.empty = EmptyState(self)
        self.column = QWidget()
        self.column.setObjectName("chat-column")
        column = QVBoxLayout(self.column)
        column.setContentsMargins(16, 12, 16, 12)
        column.addWidget(self.empty)
        column.addLayout(self.messages)
        self.column.setMaximumWidth(self.fontMetrics().averageCharWidth() * COLUMN_CHARS + 2 * 16 + 2 * 14 + 48)
        holder = QWidget()
        holder.setObjectName("chat-area")
        centre = QHBoxLayout(holder)
        centre.setContentsMargins(0, 0, 0, 0)
        centre.addWidget(self.column)  # a widget's maximum width and the layout's centring keep it in the middle
        self.setObjectName("chat-scroll")
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setWidgetResizable(True)
        self.setWidget(holder)
        self.setAccessibleName("Messages")
        self.follower = ScrollFollower(self)
