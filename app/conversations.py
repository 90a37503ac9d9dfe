"""Conversations and their messages in SQLite (WAL), in the user's data folder. Qt-free.

Every message is committed when it is shown as sent, and a reply is saved while it streams, so a
crash or a kill loses nothing the user saw; a reply that was streaming when Lantern died comes back
marked as cut off.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY, title TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, conversation INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL, content TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'done',
    stats TEXT, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation, id);
"""
STATUSES = ("done", "streaming", "stopped", "cut_off", "error")


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    created: float
    updated: float


@dataclass(frozen=True)
class StoredMessage:
    id: int
    conversation: int
    role: str
    content: str
    status: str  # done, streaming, stopped (the user pressed Stop), cut_off (Lantern died), error
    stats: dict | None
    created: float


class ConversationStore:
    """One SQLite file; safe to use from several threads (one connection, one lock)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # in WAL: a killed process loses no committed row
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            # Replies that were streaming when Lantern last stopped were cut off by a crash or a kill.
            self._db.execute("UPDATE messages SET status='cut_off' WHERE status='streaming'")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- conversations ----------------------------------------------------------------------------

    def create(self, title: str = "New chat") -> Conversation:
        now = time.time()
        with self._lock:
            cur = self._db.execute("INSERT INTO conversations(title, created, updated) VALUES (?, ?, ?)",
                                   (title, now, now))
        return Conversation(cur.lastrowid, title, now, now)

    def rename(self, conversation: int, title: str) -> None:
        with self._lock:
            self._db.execute("UPDATE conversations SET title=? WHERE id=?", (title, conversation))

    def delete(self, conversation: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM conversations WHERE id=?", (conversation,))

    def conversations(self, search: str = "") -> list[Conversation]:
        """Newest first; `search` matches titles and message text."""
        query = "SELECT id, title, created, updated FROM conversations"
        args: tuple = ()
        if search:
            escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            like = f"%{escaped}%"  # the user's text, matched literally
            query += (" WHERE title LIKE ? ESCAPE '\\' OR id IN "
                      "(SELECT conversation FROM messages WHERE content LIKE ? ESCAPE '\\')")
            args = (like, like)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY updated DESC, id DESC", args).fetchall()
        return [Conversation(*r) for r in rows]

    # -- messages ---------------------------------------------------------------------------------

    def add(self, conversation: int, role: str, content: str, *, status: str = "done",
            stats: dict | None = None) -> StoredMessage:
        if status not in STATUSES:
            raise ValueError(f"unknown message status {status!r}")
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            cur = self._db.execute(
                "INSERT INTO messages(conversation, role, content, status, stats, created) VALUES (?, ?, ?, ?, ?, ?)",
                (conversation, role, content, status, json.dumps(stats) if stats else None, now))
            self._db.execute("UPDATE conversations SET updated=? WHERE id=?", (now, conversation))
            self._db.execute("COMMIT")
        return StoredMessage(cur.lastrowid, conversation, role, content, status, stats, now)

    def update(self, message: int, *, content: str, status: str | None = None, stats: dict | None = None) -> None:
        """Save a streaming reply's text so far, or its end (status done / stopped / error, with its figures)."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown message status {status!r}")
        with self._lock:
            self._db.execute(
                "UPDATE messages SET content=?, status=COALESCE(?, status), stats=COALESCE(?, stats) WHERE id=?",
                (content, status, json.dumps(stats) if stats else None, message))

    def messages(self, conversation: int) -> list[StoredMessage]:
        with self._lock:
            rows = self._db.execute("SELECT id, conversation, role, content, status, stats, created FROM messages "
                                    "WHERE conversation=? ORDER BY id", (conversation,)).fetchall()
        return [StoredMessage(*r[:5], json.loads(r[5]) if r[5] else None, r[6]) for r in rows]

    def delete_from(self, message: int) -> None:
        """Drop a message and everything after it in its conversation (edit and resend, regenerate)."""
        with self._lock:
            row = self._db.execute("SELECT conversation FROM messages WHERE id=?", (message,)).fetchone()
            if row is not None:
                self._db.execute("DELETE FROM messages WHERE conversation=? AND id>=?", (row[0], message))
