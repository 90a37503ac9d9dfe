"""Conversations and their messages in SQLite (WAL), in the user's data folder. Qt-free.

Every message is committed when it is shown as sent, and a reply is saved while it streams, so a
crash or a kill loses nothing the user saw; a reply that was streaming when Lantern died comes back
marked as cut off.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from models.owned_files import disk_full_error, move_aside

SCHEMA_VERSION = 3  # 2: messages.writer, the process writing a streaming reply; 3: messages.reasoning
_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY, title TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, conversation INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL, content TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'done',
    stats TEXT, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation, id);
"""
_COLUMNS = "id, conversation, role, content, status, stats, created, reasoning"
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
    reasoning: str = ""  # a reply's thinking, shown folded above it; never sent back as answer text


class ConversationStore:
    """One SQLite file; safe to use from several threads (one connection, one lock)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._writer = _this_process()
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as e:  # not a database, or one of another shape: kept aside, never deleted
            if _is_full(e):
                raise disk_full_error(path.parent) from None
            move_aside(path, str(e))
            self._db = self._open()
        with self._lock:
            self._mark_cut_off()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=10)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # in WAL: a killed process loses no committed row
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
            if "writer" not in columns:
                db.execute("ALTER TABLE messages ADD COLUMN writer TEXT")  # schema 1 -> 2
            if "reasoning" not in columns:
                db.execute("ALTER TABLE messages ADD COLUMN reasoning TEXT")  # schema 2 -> 3
            db.execute(f"SELECT {_COLUMNS}, writer FROM messages LIMIT 1").fetchall()  # the shape we read
            db.execute("SELECT id, title, created, updated FROM conversations LIMIT 1").fetchall()
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        return db

    def _mark_cut_off(self) -> None:
        """A reply left streaming by a process that is gone was cut off by a crash or a kill; one whose writer
        still runs (a second window, the CLI) is left alone."""
        rows = self._db.execute("SELECT id, writer FROM messages WHERE status='streaming'").fetchall()
        gone = [(mid,) for mid, writer in rows if not _alive(writer)]
        if gone:
            self._db.executemany("UPDATE messages SET status='cut_off' WHERE id=?", gone)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _full_disk(self):
        try:
            yield
        except sqlite3.OperationalError as e:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            if _is_full(e):
                raise disk_full_error(self.path.parent) from None
            raise

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
        with self._lock, self._full_disk():
            self._db.execute("BEGIN")
            cur = self._db.execute(
                "INSERT INTO messages(conversation, role, content, status, stats, created, writer) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (conversation, role, content, status, json.dumps(stats) if stats else None, now, self._writer))
            self._db.execute("UPDATE conversations SET updated=? WHERE id=?", (now, conversation))
            self._db.execute("COMMIT")
        return StoredMessage(cur.lastrowid, conversation, role, content, status, stats, now)

    def update(self, message: int, *, content: str, status: str | None = None, stats: dict | None = None,
               reasoning: str | None = None) -> None:
        """Save a streaming reply's text so far, or its end (status done / stopped / error, with its figures)."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown message status {status!r}")
        with self._lock, self._full_disk():
            self._db.execute(
                "UPDATE messages SET content=?, status=COALESCE(?, status), stats=COALESCE(?, stats), "
                "reasoning=COALESCE(?, reasoning) WHERE id=?",
                (content, status, json.dumps(stats) if stats else None, reasoning, message))

    def messages(self, conversation: int) -> list[StoredMessage]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM messages WHERE conversation=? ORDER BY id",
                                    (conversation,)).fetchall()
        return [StoredMessage(*r[:5], _stats(r[5]), r[6], r[7] if isinstance(r[7], str) else "") for r in rows]

    def delete_from(self, message: int) -> None:
        """Drop a message and everything after it in its conversation (edit and resend, regenerate)."""
        with self._lock:
            row = self._db.execute("SELECT conversation FROM messages WHERE id=?", (message,)).fetchone()
            if row is not None:
                self._db.execute("DELETE FROM messages WHERE conversation=? AND id>=?", (row[0], message))


def _stats(raw) -> dict | None:
    try:
        value = json.loads(raw) if raw else None
    except (ValueError, TypeError, RecursionError):
        return None  # a damaged figure line costs the figures, never the message
    return value if isinstance(value, dict) else None


def _this_process() -> str:
    import psutil

    return f"{os.getpid()}:{psutil.Process().create_time():.3f}"


def _alive(writer: str | None) -> bool:
    """Whether the process that wrote `writer` (pid and start time: pids are reused) still runs."""
    import psutil

    try:
        pid, started = str(writer).split(":")
        return f"{psutil.Process(int(pid)).create_time():.3f}" == started
    except (ValueError, psutil.Error):
        return False


def _is_full(e: sqlite3.Error) -> bool:
    return getattr(e, "sqlite_errorcode", None) == 13 or "database or disk is full" in str(e)
