"""The sidebar: conversations under Pinned, Today, Yesterday..., with new, rename (F2 or double-click), pin, delete
and search."""
from __future__ import annotations

import time
from datetime import datetime

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import (QHBoxLayout, QLineEdit, QListWidget, QListWidgetItem, QMenu, QPushButton, QToolButton,
                               QVBoxLayout, QWidget)

from app.conversations import ConversationStore
from ui import dialogs
from ui.chat_files import ChatFiles
from ui.icons import icon, set_icon

CHAT = Qt.ItemDataRole.UserRole  # a chat row's id; a date heading has none
PINNED = Qt.ItemDataRole.UserRole + 1


def date_group(updated: float, now: float) -> str:
    """The heading a chat last written to at `updated` goes under (local calendar days)."""
    days = (datetime.fromtimestamp(now).date() - datetime.fromtimestamp(updated).date()).days
    if days <= 0:
        return "Today"
    if days == 1:
        return "Yesterday"
    return "Previous 7 days" if days < 7 else "Previous 30 days" if days < 30 else "Older"


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
        set_icon(self.new_button, "plus", "accent_text")
        self.new_button.setProperty("primary", True)
        self.new_button.clicked.connect(self.sig_new_chat_requested)
        self.search = QLineEdit(self, placeholderText="Search chats", clearButtonEnabled=True)
        self.search.setAccessibleName("Search chats")
        search_icon = self.search.addAction(icon("search"), QLineEdit.ActionPosition.LeadingPosition)
        search_icon.setText("Search chats")
        for button in self.search.findChildren(QToolButton):  # the icon's own button, for screen readers
            button.setAccessibleName("Search chats")
        self._search_delay = QTimer(self, singleShot=True, interval=150)
        self._search_delay.timeout.connect(lambda: self.refresh(self.current_id()))
        self.search.textChanged.connect(lambda _: self._search_delay.start())
        self.list = QListWidget(self)
        self.list.setAccessibleName("Chats")
        self.list.setObjectName("chat-list")
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
        self.rename_button.clicked.connect(lambda: self.current_id() is not None and
                                           self.list.editItem(self.list.currentItem()))
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
        return item.data(CHAT) if item else None

    def ids(self) -> list[int]:
        return [i for i in (self.list.item(r).data(CHAT) for r in range(self.list.count())) if i is not None]

    def chat_item(self, n: int) -> QListWidgetItem | None:
        """The `n`th chat's row (date headings not counted)."""
        rows = [self.list.item(r) for r in range(self.list.count()) if self.list.item(r).data(CHAT) is not None]
        return rows[n] if 0 <= n < len(rows) else None

    def refresh(self, select: int | None = None) -> None:
        """Reload from the store (newest first, filtered by the search text) and select `select` if listed."""
        self._filling = True
        try:
            self.list.clear()
            heading, now = None, time.time()
            for c in self.store.conversations(self.search.text().strip()):
                group = "Pinned" if c.pinned else date_group(c.updated, now)
                if group != heading:
                    heading = group
                    self.list.addItem(self._heading(group))
                item = QListWidgetItem(c.title)
                item.setData(CHAT, c.id)
                item.setData(PINNED, c.pinned)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
                self._mark(item, c.id == self.generating)
                self.list.addItem(item)
                if c.id == select:
                    self.list.setCurrentItem(item)
        finally:
            self._filling = False

    def _heading(self, text: str) -> QListWidgetItem:
        item = QListWidgetItem(text.upper())
        item.setFlags(Qt.ItemFlag.NoItemFlags)  # not chosen, edited or reached by the arrow keys
        font = item.font()
        font.setPointSizeF(font.pointSizeF() * 0.8)
        font.setBold(True)
        item.setFont(font)
        item.setData(Qt.ItemDataRole.AccessibleTextRole, text)
        return item

    def set_pinned(self, conversation: int, pinned: bool) -> None:
        self.store.set_pinned(conversation, pinned)
        self.refresh(self.current_id())

    def set_generating(self, conversation: int | None) -> None:
        """Mark the chat whose reply is being written (None: none is)."""
        self.generating = conversation
        self._filling = True  # a mark is not a rename
        try:
            for i in range(self.list.count()):
                item = self.list.item(i)
                if item.data(CHAT) is not None:
                    self._mark(item, item.data(CHAT) == conversation)
        finally:
            self._filling = False

    def _mark(self, item: QListWidgetItem, writing: bool) -> None:
        item.setIcon(self._dot() if writing else icon("pin") if item.data(PINNED) else QIcon())
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
        conversation, title, pinned = item.data(CHAT), item.text(), bool(item.data(PINNED))
        menu = QMenu(self)
        if conversation is None:  # a date heading
            return menu
        menu.addAction("Unpin" if pinned else "Pin to the top", lambda: self.set_pinned(conversation, not pinned))
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
                     if self.list.item(i).data(CHAT) == conversation), None)

    def _chosen(self, item: QListWidgetItem | None, _previous) -> None:
        if item is not None and not self._filling and item.data(CHAT) is not None:
            self.sig_conversation_chosen.emit(item.data(CHAT))

    def _renamed(self, item: QListWidgetItem) -> None:
        if self._filling:
            return
        title = item.text().strip()
        if title:
            self.store.rename(item.data(CHAT), title)
        else:  # an empty title is not a title: put the old one back (after this signal: refresh deletes the item)
            QTimer.singleShot(0, self, lambda: self.refresh(self.current_id()))

    def eventFilter(self, watched, event) -> bool:
        if watched is self.list and event.type() == QEvent.Type.KeyPress and event.key() == Qt.Key.Key_Delete \
                and self.list.state() != QListWidget.State.EditingState:
            self._delete_clicked()
            return True
        return super().eventFilter(watched, event)

    def _delete_clicked(self) -> None:
        item = self.list.currentItem()
        if item is not None and item.data(CHAT) is not None and \
                dialogs.confirm(self, "Delete chat", f"Delete “{item.text()}” and all its messages?"):
            self.delete(item.data(CHAT))

    def delete(self, conversation: int) -> None:
        self.store.delete(conversation)
        self.refresh()
        self.sig_conversation_deleted.emit(conversation)
