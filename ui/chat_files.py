"""Export a chat (Markdown, JSON), export every chat (zip), import chats: the file dialogs and the work off the GUI
thread; the formats are app.chat_export's."""
from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from app.chat_export import archive, chat_json, chat_markdown, file_title, import_file
from app.conversations import ConversationStore
from files.owned_files import atomic_write
from ui import dialogs
from ui.tasks import run_task

KINDS = {"markdown": ("Markdown (*.md)", ".md"), "json": ("JSON (*.json)", ".json")}


class ChatFiles(QObject):
    sig_notice = Signal(str)  # what happened, in a sentence, for the notice line
    sig_imported = Signal(list)  # the new chats' ids

    def __init__(self, store: ConversationStore, parent=None):
        super().__init__(parent)
        self.store = store

    def export_chat(self, conversation: int, kind: str, title: str) -> None:
        filter_, suffix = KINDS[kind]
        path = dialogs.save_path(self.parent(), "Export chat", file_title(title) + suffix, filter_)
        if path is None:
            return

        def write() -> Path:
            text = chat_markdown(self.store, conversation) if kind == "markdown" else \
                json.dumps(chat_json(self.store, conversation), ensure_ascii=False, indent=1)
            atomic_write(path, text)
            return path

        run_task(write, lambda p: self.sig_notice.emit(f"Saved “{title}” to {p}."), self._failed("Export"))

    def export_all(self) -> None:
        path = dialogs.save_path(self.parent(), "Export all chats", "lantern-chats.zip", "Zip archive (*.zip)")
        if path is not None:
            run_task(lambda: archive(self.store, path), lambda n: self.sig_notice.emit(f"Saved {_count(n, 'chat')} to {path}."),
                     self._failed("Export"))

    def import_chats(self) -> None:
        path = dialogs.open_path(self.parent(), "Import chats",
                                 "Chats (*.json *.zip);;Lantern, OpenAI or ChatGPT JSON (*.json);;Zip archives (*.zip)")
        if path is not None:
            run_task(lambda: import_file(self.store, path), self._imported, self._failed("Import"))

    def _imported(self, result) -> None:
        self.sig_imported.emit(result.conversations)  # the first one opens...
        self.sig_notice.emit(result.summary())  # ...and the notice stays with it

    def _failed(self, what: str):
        return lambda e: self.sig_notice.emit(f"{what} failed: {e}")


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n:,} {word}s"
