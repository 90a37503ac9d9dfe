"""The sidebar: conversations newest first, with new, rename (F2 or double-click), delete and search."""
from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import (QHBoxLayout, QLineEdit, QListWidget, QListWidgetItem, QMenu, QPushButton, QToolButton,
                               QVBoxLayout, QWidget)

from app.conversations import ConversationStore
from ui import dialogs
from ui.chat_files import ChatFiles
from ui.icons import set_icon


class ConversationList(QWidget):
    sig_conversation_chosen = Signal(int)
    sig_new_chat_requested = Signal()
    sig_conversation_deleted = Signal(int)

    def __init__(self, store: ConversationStore, parent=None):
        super().__init__(parent)
        self.store = store
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.new_button = QPushButton("New chat", self)
        self.new_button.setAccessibleName("New chat")
        set_icon(self.new_button, "plus")
        self.new_button.clicked.connect(self.sig_new_chat_requested)
        self.search = QLineEdit(self, placeholderText="Search chats", clearButtonEnabled=True)
        self.search.setAccessibleName("Search chats")
        self._search_delay = QTimer(self, singleShot=True, interval=150)
        self._search_delay.timeout.connect(lambda: self.refresh(self.current_id()))
        self.search.textChanged.connect(lambda _: self._search_delay.start())
        self.list = QListWidget(self)
        self.list.setAccessibleName("Chats")
        # long titles end in "…" at the sidebar's width instead of a horizontal scroll bar
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setEditTriggers(QListWidget.EditTrigger.DoubleClicked | QListWidget.EditTrigger.EditKeyPressed)
        self.list.currentItemChanged.connect(self._chosen)
        self.list.itemChanged.connect(self._renamed)
        self.list.installEventFilter(self)  # the Delete key deletes the chosen chat (after asking)
        buttons = QHBoxLayout()
        self.rename_button = QPushButton("Rename", self)
        self.rename_button.setAccessibleName("Rename chat")
        set_icon(self.rename_button, "rename")
        self.rename_button.clicked.connect(lambda: self.list.currentItem() and self.list.editItem(self.list.currentItem()))
        self.delete_button = QPushButton("Delete", self)
        self.delete_button.setAccessibleName("Delete chat")
        set_icon(self.delete_button, "trash")
        self.delete_button.clicked.connect(self._delete_clicked)
        # import and export of every chat; one chat's export is on its right-click menu
        self.files = ChatFiles(store, self)
        self.files.sig_imported.connect(lambda ids: self.refresh(ids[0] if ids else self.current_id()))
        self.more_button = QToolButton(self)
        self.more_button.setText("More")
        self.more_button.setAccessibleName("More chat actions")
        self.more_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        more = QMenu(self.more_button)
        self.import_action = more.addAction("Import chats…", self.files.import_chats)
        self.export_all_action = more.addAction("Export all chats…", self.files.export_all)
        self.more_button.setMenu(more)
        buttons.addWidget(self.rename_button)
        buttons.addWidget(self.delete_button)
        buttons.addWidget(self.more_button)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(
            lambda pos: (item := self.list.itemAt(pos)) and self.menu_for(item).exec(self.list.mapToGlobal(pos)))
        layout.addWidget(self.new_button)
        layout.addWidget(self.search)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        self._filling = False
        self.generating: int | None = None  # the chat whose reply is being written: marked in the list

    def current_id(self) -> int | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item else None

    def ids(self) -> list[int]:
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]

    def refresh(self, select: int | None = None) -> None:
        """Reload from the store (newest first, filtered by the search text) and select `select` if listed."""
        self._filling = True
        try:
            self.list.clear()
            for c in self.store.conversations(self.search.text().strip()):
                item = QListWidgetItem(c.title)
                item.setData(Qt.ItemDataRole.UserRole, c.id)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
                self._mark(item, c.id == self.generating)
                self.list.addItem(item)
                if c.id == select:
                    self.list.setCurrentItem(item)
        finally:
            self._filling = False

    def set_generating(self, conversation: int | None) -> None:
        """Mark the chat whose reply is being written (None: none is)."""
        self.generating = conversation
        self._filling = True  # a mark is not a rename
        try:
            for i in range(self.list.count()):
                item = self.list.item(i)
                self._mark(item, item.data(Qt.ItemDataRole.UserRole) == conversation)
        finally:
            self._filling = False

    def _mark(self, item: QListWidgetItem, writing: bool) -> None:
        item.setIcon(self._dot() if writing else QIcon())
        item.setToolTip("Writing a reply…" if writing else item.text())

    def _dot(self) -> QIcon:
        pixmap = QPixmap(10, 10)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setBrush(self.palette().color(QPalette.ColorRole.Highlight))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.drawEllipse(1, 1, 8, 8)
        painter.end()
        return QIcon(pixmap)

    def menu_for(self, item: QListWidgetItem) -> QMenu:
        """A chat's right-click menu: rename, export, delete."""
        conversation, title = item.data(Qt.ItemDataRole.UserRole), item.text()
        menu = QMenu(self)
        # by the chat's id, not the item: the list may be refilled (a search, a reply's mark) while the menu is open
        menu.addAction("Rename", lambda: (found := self._item_of(conversation)) and self.list.editItem(found))
        menu.addAction("Export as Markdown…", lambda: self.files.export_chat(conversation, "markdown", title))
        menu.addAction("Export as JSON…", lambda: self.files.export_chat(conversation, "json", title))
        menu.addSeparator()
        menu.addAction("Delete…", lambda: (found := self._item_of(conversation)) and (
            self.list.setCurrentItem(found), self._delete_clicked()))
        return menu

    def _item_of(self, conversation: int) -> QListWidgetItem | None:
        return next((self.list.item(i) for i in range(self.list.count())
                     if self.list.item(i).data(Qt.ItemDataRole.UserRole) == conversation), None)

    def _chosen(self, item: QListWidgetItem | None, _previous) -> None:
        if item is not None and not self._filling:
            self.sig_conversation_chosen.emit(item.data(Qt.ItemDataRole.UserRole))

    def _renamed(self, item: QListWidgetItem) -> None:
        if self._filling:
            return
        title = item.text().strip()
        if title:
            self.store.rename(item.data(Qt.ItemDataRole.UserRole), title)
        else:  # an empty title is not a title: put the old one back (after this signal: refresh deletes the item)
            QTimer.singleShot(0, self, lambda: self.refresh(self.current_id()))

    def eventFilter(self, watched, event) -> bool:
        from PySide6.QtCore import QEvent

        if watched is self.list and event.type() == QEvent.Type.KeyPress and event.key() == Qt.Key.Key_Delete \
                and self.list.state() != QListWidget.State.EditingState:
            self._delete_clicked()
            return True
        return super().eventFilter(watched, event)

    def _delete_clicked(self) -> None:
        item = self.list.currentItem()
        if item is not None and dialogs.confirm(self, "Delete chat", f"Delete “{item.text()}” and all its messages?"):
            self.delete(item.data(Qt.ItemDataRole.UserRole))

    def delete(self, conversation: int) -> None:
        self.store.delete(conversation)
        self.refresh()
        self.sig_conversation_deleted.emit(conversation)
