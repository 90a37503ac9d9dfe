"""The window's pages behind a navigation rail on the left: Chat, Models, Server, Settings, each with an icon.
Its methods are QTabWidget's that the window uses, so a page is shown the same way from anywhere."""
from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import QButtonGroup, QHBoxLayout, QLabel, QStackedWidget, QToolButton, QVBoxLayout, QWidget

from ui.icons import icon, set_icon
from ui.theme import SPACE


class NavRail(QWidget):
    currentChanged = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rail = QWidget(self)
        self.rail.setObjectName("nav-rail")
        self.rail.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        self.rail.setAccessibleName("Pages")
        self._buttons = QVBoxLayout(self.rail)
        self._buttons.setContentsMargins(SPACE["s"], SPACE["m"], SPACE["s"], SPACE["m"])
        self._buttons.setSpacing(SPACE["xs"])
        logo = QLabel(self.rail)
        logo.setPixmap(icon("lantern").pixmap(28, 28))
        logo.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        logo.setToolTip("Lantern")
        self._buttons.addWidget(logo)
        self._buttons.addSpacing(SPACE["m"])
        self._end = self._buttons.count()  # buttons go before the stretch
        self._buttons.addStretch(1)
        self.stack = QStackedWidget(self)
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)
        self.group.idClicked.connect(self.setCurrentIndex)
        self.stack.currentChanged.connect(self._shown)
        self.content = QVBoxLayout()  # a header (set_header) above the page
        self.content.setContentsMargins(0, 0, 0, 0)
        self.content.setSpacing(0)
        self.content.addWidget(self.stack, 1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.rail)
        layout.addLayout(self.content, 1)
        self._titles: list[str] = []

    def addTab(self, page: QWidget, title: str, icon_name: str = "") -> int:
        index = self.stack.addWidget(page)
        button = QToolButton(self.rail)
        button.setText(title)
        button.setCheckable(True)
        button.setAccessibleName(f"{title} page")
        button.setToolTip(title)
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
        button.setIconSize(QSize(22, 22))
        button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        if icon_name:
            set_icon(button, icon_name)
        self.group.addButton(button, index)
        self._buttons.insertWidget(self._end + index, button)
        self._titles.append(title)
        if index == 0:
            button.setChecked(True)
        return index

    def set_header(self, header: QWidget) -> None:
        """A bar above every page (the model in use)."""
        self.content.insertWidget(0, header)

    def button(self, index: int) -> QToolButton:
        return self.group.button(index)

    def count(self) -> int:
        return self.stack.count()

    def tabText(self, index: int) -> str:
        return self._titles[index]

    def indexOf(self, page: QWidget) -> int:
        return self.stack.indexOf(page)

    def currentIndex(self) -> int:
        return self.stack.currentIndex()

    def currentWidget(self) -> QWidget:
        return self.stack.currentWidget()

    def setCurrentIndex(self, index: int) -> None:
        self.stack.setCurrentIndex(index)

    def setCurrentWidget(self, page: QWidget) -> None:
        self.stack.setCurrentWidget(page)

    def _shown(self, index: int) -> None:
        if (button := self.group.button(index)) is not None:
            button.setChecked(True)
        self.currentChanged.emit(index)
