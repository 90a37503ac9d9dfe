"""The chat keeps its newest message in sight while it grows, until the user scrolls up; then a "↓ Latest" button
over the messages' corner brings them back."""
from __future__ import annotations

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QScrollArea, QToolButton


class ScrollFollower(QObject):
    def __init__(self, scroll: QScrollArea):
        super().__init__(scroll)
        self.scroll = scroll
        self.following = False  # keep the end in sight as messages grow (set by sending; a scroll up clears it)
        self._moving = False  # the view is moving itself, not the user
        bar = scroll.verticalScrollBar()
        bar.rangeChanged.connect(self._range_changed)
        bar.valueChanged.connect(self._scrolled)
        self.latest_button = QToolButton(scroll)  # a child of the area, not of its contents: it does not scroll
        self.latest_button.setText("↓ Latest")
        self.latest_button.setObjectName("jump-to-latest")
        self.latest_button.setAccessibleName("Jump to the latest message")
        self.latest_button.clicked.connect(self.follow)
        self.latest_button.hide()
        scroll.installEventFilter(self)

    def follow(self) -> None:
        self.following = True
        self._scroll_to_end()

    def _scroll_to_end(self) -> None:
        bar = self.scroll.verticalScrollBar()
        self._moving = True
        try:
            bar.setValue(bar.maximum())
        finally:
            self._moving = False

    def _range_changed(self, _low: int, _high: int) -> None:
        if self.following:  # the range grows as the reply streams in and as new messages are laid out
            self._scroll_to_end()
        self._place_latest()

    def _scrolled(self, value: int) -> None:
        if not self._moving:  # the user scrolled: follow again only once they are back at the end
            self.following = value >= self.scroll.verticalScrollBar().maximum() - 4
        self._place_latest()

    def _place_latest(self) -> None:
        bar = self.scroll.verticalScrollBar()
        away = bar.maximum() - bar.value() > 40
        if away:
            b = self.latest_button
            b.adjustSize()
            b.move(self.scroll.width() - b.width() - 28, self.scroll.height() - b.height() - 12)
            b.raise_()
        self.latest_button.setVisible(away)

    def eventFilter(self, watched, event) -> bool:
        if watched is self.scroll and event.type() == QEvent.Type.Resize:
            self._place_latest()
        return super().eventFilter(watched, event)
