"""The chat keeps its newest message in sight while it grows, until the user scrolls up; then a "↓ Latest" button
over the messages' corner brings them back."""
from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QPoint
from PySide6.QtWidgets import QScrollArea, QToolButton
from shiboken6 import isValid


class ScrollFollower(QObject):
    def __init__(self, scroll: QScrollArea):
        super().__init__(scroll)
        self.scroll = scroll
        self.following = False  # keep the end in sight as messages grow (set by sending; a scroll up clears it)
        self._moving = False  # the view is moving itself, not the user
        self._empty = True  # no messages: nothing to jump to
        self._kept = None  # (a message view, its offset in the viewport) to hold in place while laid out
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
        self._kept = None
        self._scroll_to_end()

    def offset_of(self, widget) -> int:
        """Where `widget` is in the viewport (its top, from the viewport's top)."""
        return widget.mapTo(self.scroll.widget(), QPoint()).y() - self.scroll.verticalScrollBar().value()

    def keep(self, widget, offset: int) -> None:
        """Keep `widget` at `offset` from the viewport's top while the messages are laid out (a switch of versions
        stays at the message instead of jumping to the end)."""
        self.following = False
        self._kept = (widget, offset)
        self._apply_kept()

    def forget(self) -> None:
        self._kept = None

    def _apply_kept(self) -> None:
        widget, offset = self._kept
        if not isValid(widget):
            self._kept = None
            return
        self._moving = True
        try:
            self.scroll.verticalScrollBar().setValue(widget.mapTo(self.scroll.widget(), QPoint()).y() - offset)
        finally:
            self._moving = False

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
        elif self._kept is not None:
            self._apply_kept()
        self._place_latest()

    def _scrolled(self, value: int) -> None:
        if not self._moving:  # the user scrolled: follow again only once they are back at the end
            self._kept = None
            self.following = value >= self.scroll.verticalScrollBar().maximum() - 4
        self._place_latest()

    def set_empty(self, empty: bool) -> None:
        self._empty = empty
        self._place_latest()

    def _place_latest(self) -> None:
        bar = self.scroll.verticalScrollBar()
        away = bar.maximum() - bar.value() > 40 and not self._empty
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
