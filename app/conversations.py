"""Conversations and their messages in SQLite (WAL), in the user's data folder. Qt-free.

Every message is committed when it is shown as sent, and a reply is saved while it streams, so a
crash or a kill loses nothing the user saw; a reply that was streaming when Lantern died comes back
marked as cut off.

A conversation is a tree: each message names the one it follows (`parent`), so a regenerated reply or an
edited message is a new branch beside the old one, never an overwrite. The conversation remembers the
branch on screen (`current`, the last message of that path).
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

import psutil

from files.owned_files import disk_full_error, move_aside

SCHEMA_VERSION = 6  # 2: messages.writer, the process writing a streaming reply; 3: messages.reasoning;
# 4: messages.parent and conversations.current (branches), conversations.settings (a chat's own settings);
# 5: conversations.pinned; 6: messages.tools (a reply's tool rounds: app/tools/agent_loop.py)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY, title TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, conversation INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL, content TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'done',
    stats TEXT, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation, id);
"""
_COLUMNS = "id, conversation, role, content, status, stats, created, reasoning, parent, tools"
LATEST = object()  # add(): after the last message of the branch on screen
STATUSES = ("done", "streaming", "stopped", "cut_off", "error")


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    created: float
    updated: float
    pinned: bool = False  # kept at the top of the list


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
    parent: int | None = None  # the message this one follows (None: the conversation's first)
    # the tool rounds before a reply's answer: [{"text", "reasoning", "calls": [{"id", "name", "server", "tool",
    # "arguments", "status", "result", "is_error", "size", "seconds", "cut"}]}] (app/tools/agent_loop.py)
    tools: tuple = ()


@dataclass(frozen=True)
class ImportedMessage:
    key: object  # the message's id in the imported file
    parent: object  # its parent's key there (None: the first)
    role: str
    content: str
    reasoning: str
    stats: dict | None
    status: str
    created: float
    tools: tuple = ()  # a reply's tool rounds (StoredMessage.tools), as the file gave them: checked on the way in


@dataclass(frozen=True)
class ImportedChat:
    title: str
    created: float
    updated: float
    messages: list  # ImportedMessage, parents before their children
    current: object  # the key of the last message of the branch on screen


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
            if "parent" not in columns:
                _add_branches(db)  # schema 3 -> 4
            chat_columns = {row[1] for row in db.execute("PRAGMA table_info(conversations)")}
            if "settings" not in chat_columns:
                db.execute("ALTER TABLE conversations ADD COLUMN settings TEXT")  # schema 4: a chat's own settings
            if "pinned" not in chat_columns:
                db.execute("ALTER TABLE conversations ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0")  # schema 5
            if "tools" not in {row[1] for row in db.execute("PRAGMA table_info(messages)")}:
                db.execute("ALTER TABLE messages ADD COLUMN tools TEXT")  # schema 6: a reply's tool rounds
            db.execute(f"SELECT {_COLUMNS}, writer FROM messages LIMIT 1").fetchall()  # the shape we read
            db.execute("SELECT id, title, created, updated, current, pinned FROM conversations LIMIT 1").fetchall()
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

    def import_conversations(self, chats: list[ImportedChat]) -> list[int]:
        """Add whole chats, branches and all, in one transaction: every one of them, or none."""
        ids = []
        with self._lock, self._full_disk():
            self._db.execute("BEGIN")
            try:
                for chat in chats:
                    cid = self._db.execute("INSERT INTO conversations(title, created, updated) VALUES (?, ?, ?)",
                                           (chat.title, chat.created, chat.updated)).lastrowid
                    new: dict = {}
                    for m in chat.messages:
                        if m.status not in STATUSES or m.status == "streaming":
                            raise ValueError(f"unknown message status {m.status!r}")
                        new[m.key] = self._db.execute(
                            "INSERT INTO messages(conversation, role, content, status, stats, created, reasoning, "
                            "parent, tools) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (cid, m.role, m.content, m.status, json.dumps(m.stats) if m.stats else None, m.created,
                             m.reasoning or None, new.get(m.parent),  # a parent not seen: a new root
                             _tools_json(m.tools) if m.role == "assistant" else None)).lastrowid
                    self._db.execute("UPDATE conversations SET current=? WHERE id=?", (new.get(chat.current), cid))
                    ids.append(cid)
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return ids

    def chat_settings(self, conversation: int) -> dict | None:
        """The chat's own settings as saved (app.settings.ChatSettings checks them); damaged ones read as none."""
        with self._lock:
            row = self._db.execute("SELECT settings FROM conversations WHERE id=?", (conversation,)).fetchone()
        return _stats(row[0]) if row else None

    def set_chat_settings(self, conversation: int, settings: dict | None) -> None:
        with self._lock, self._full_disk():
            self._db.execute("UPDATE conversations SET settings=? WHERE id=?",
                             (json.dumps(settings) if settings else None, conversation))

    def rename(self, conversation: int, title: str) -> None:
        with self._lock:
            self._db.execute("UPDATE conversations SET title=? WHERE id=?", (title, conversation))

    def delete(self, conversation: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM conversations WHERE id=?", (conversation,))

    def set_pinned(self, conversation: int, pinned: bool) -> None:
        with self._lock:
            self._db.execute("UPDATE conversations SET pinned=? WHERE id=?", (int(pinned), conversation))

    def conversations(self, search: str = "") -> list[Conversation]:
        """Pinned ones first, then newest first; `search` matches titles and message text."""
        query = "SELECT id, title, created, updated, pinned = 1 FROM conversations"
        args: tuple = ()
        if search:
            escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            like = f"%{escaped}%"  # the user's text, matched literally
            query += (" WHERE title LIKE ? ESCAPE '\\' OR id IN "
                      "(SELECT conversation FROM messages WHERE content LIKE ? ESCAPE '\\')")
            args = (like, like)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY pinned = 1 DESC, updated DESC, id DESC", args).fetchall()
        return [Conversation(*r[:4], bool(r[4])) for r in rows]

    # -- messages ---------------------------------------------------------------------------------

    def add(self, conversation: int, role: str, content: str, *, status: str = "done",
            stats: dict | None = None, parent=LATEST, reasoning: str = "", tools: list | tuple = ()
            ) -> StoredMessage:
        """A message after `parent` (default: the end of the branch on screen); it becomes that branch's end.
        A parent that already has a next message makes a new branch beside it (regenerate, edit)."""
        if status not in STATUSES:
            raise ValueError(f"unknown message status {status!r}")
        now = time.time()
        with self._lock, self._full_disk():
            self._db.execute("BEGIN")
            if parent is LATEST:
                parent = self._leaf(conversation)
            elif parent is not None and self._db.execute("SELECT 1 FROM messages WHERE id=? AND conversation=?",
                                                         (parent, conversation)).fetchone() is None:
                self._db.execute("ROLLBACK")
                raise ValueError(f"message {parent} is not in conversation {conversation}")
            cur = self._db.execute(
                "INSERT INTO messages(conversation, role, content, status, stats, created, writer, reasoning, parent, "
                "tools) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (conversation, role, content, status, json.dumps(stats) if stats else None, now, self._writer,
                 reasoning or None, parent, json.dumps(list(tools)) if tools else None))
            self._db.execute("UPDATE conversations SET updated=?, current=? WHERE id=?",
                             (now, cur.lastrowid, conversation))
            self._db.execute("COMMIT")
        return StoredMessage(cur.lastrowid, conversation, role, content, status, stats, now, reasoning, parent,
                             _tools(json.dumps(list(tools))) if tools else ())

    def update(self, message: int, *, content: str, status: str | None = None, stats: dict | None = None,
               reasoning: str | None = None, tools: list | None = None) -> None:
        """Save a streaming reply's text so far, or its end (status done / stopped / error, with its figures), and
        its tool rounds so far."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown message status {status!r}")
        with self._lock, self._full_disk():
            self._db.execute(
                "UPDATE messages SET content=?, status=COALESCE(?, status), stats=COALESCE(?, stats), "
                "reasoning=COALESCE(?, reasoning), tools=COALESCE(?, tools) WHERE id=?",
                (content, status, json.dumps(stats) if stats else None, reasoning,
                 json.dumps(tools) if tools is not None else None, message))

    def messages(self, conversation: int) -> list[StoredMessage]:
        """The branch on screen, first message first."""
        with self._lock:
            return self._path(conversation, self._leaf(conversation))

    def path_to(self, message: int) -> list[StoredMessage]:
        """The messages from the conversation's first to `message`, on its branch."""
        with self._lock:
            row = self._db.execute("SELECT conversation FROM messages WHERE id=?", (message,)).fetchone()
            return self._path(row[0], message) if row else []

    def _path(self, conversation: int, leaf: int | None) -> list[StoredMessage]:
        rows = self._db.execute(
            f"WITH RECURSIVE path(id, depth) AS (SELECT ?, 0 UNION ALL SELECT m.parent, path.depth + 1 "
            f"FROM messages m JOIN path ON m.id = path.id WHERE m.parent < m.id AND path.depth < 100000) "
            f"SELECT {_COLUMNS} FROM messages WHERE conversation=? AND id IN (SELECT id FROM path) ORDER BY id",
            (leaf, conversation)).fetchall()
        return [_message(r) for r in rows]

    def all_messages(self, conversation: int) -> list[StoredMessage]:
        """Every message of every branch, in the order they were written (export)."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM messages WHERE conversation=? ORDER BY id",
                                    (conversation,)).fetchall()
        return [_message(r) for r in rows]

    def variants(self, message: int) -> list[int]:
        """The message and the others written in its place (regenerated replies, edits), oldest first."""
        with self._lock:
            row = self._db.execute("SELECT conversation, parent FROM messages WHERE id=?", (message,)).fetchone()
            if row is None:
                return []
            rows = self._db.execute("SELECT id FROM messages WHERE conversation=? AND parent IS ? ORDER BY id",
                                    row).fetchall()
        return [r[0] for r in rows]

    def switch_to(self, message: int) -> None:
        """Show the branch through `message`: down to its newest reply, then that one's newest, and so on."""
        with self._lock:
            row = self._db.execute("SELECT conversation FROM messages WHERE id=?", (message,)).fetchone()
            if row is not None:
                self._db.execute("UPDATE conversations SET current=? WHERE id=?", (self._deepest(message), row[0]))

    def cut_at(self, message: int) -> None:
        """Show the branch only up to `message`: the next message starts a new branch after it (the turns that
        followed stay on theirs)."""
        with self._lock:
            self._db.execute("UPDATE conversations SET current=? WHERE id=(SELECT conversation FROM messages "
                             "WHERE id=?)", (message, message))

    def delete_from(self, message: int) -> None:
        """Drop a message and everything that follows it on any branch; the branch on screen moves to the
        variant beside it, or to the message before it."""
        with self._lock, self._full_disk():
            row = self._db.execute("SELECT conversation, parent FROM messages WHERE id=?", (message,)).fetchone()
            if row is None:
                return
            conversation, parent = row
            self._db.execute("BEGIN")
            self._db.execute(
                "WITH RECURSIVE below(id) AS (SELECT ? UNION ALL SELECT m.id FROM messages m JOIN below "
                "ON m.parent = below.id) DELETE FROM messages WHERE id IN (SELECT id FROM below)", (message,))
            if self._leaf(conversation) != self._db.execute(
                    "SELECT current FROM conversations WHERE id=?", (conversation,)).fetchone()[0]:
                beside = self._db.execute("SELECT MAX(id) FROM messages WHERE conversation=? AND parent IS ?",
                                          (conversation, parent)).fetchone()[0]
                leaf = self._deepest(beside) if beside is not None else parent
                self._db.execute("UPDATE conversations SET current=? WHERE id=?", (leaf, conversation))
            self._db.execute("COMMIT")

    def _deepest(self, message: int) -> int:
        while (child := self._db.execute("SELECT MAX(id) FROM messages WHERE parent=? AND id>?",
                                           (message, message)).fetchone()[0]):  # ids grow down a branch
            message = child
        return message

    def _leaf(self, conversation: int) -> int | None:
        """The last message of the branch on screen (a missing or damaged mark: the newest message)."""
        row = self._db.execute(
            "SELECT c.current FROM conversations c JOIN messages m ON m.id = c.current AND m.conversation = c.id "
            "WHERE c.id=?", (conversation,)).fetchone()
        if row is not None:
            return row[0]
        return self._db.execute("SELECT MAX(id) FROM messages WHERE conversation=?", (conversation,)).fetchone()[0]


def _add_branches(db: sqlite3.Connection) -> None:
    """Schema 3 -> 4: every existing chat becomes one branch, each message following the one before it."""
    db.execute("BEGIN")
    db.execute("ALTER TABLE messages ADD COLUMN parent INTEGER")
    db.execute("UPDATE messages SET parent = (SELECT MAX(p.id) FROM messages p WHERE p.conversation = "
               "messages.conversation AND p.id < messages.id)")
    if "current" not in {row[1] for row in db.execute("PRAGMA table_info(conversations)")}:
        db.execute("ALTER TABLE conversations ADD COLUMN current INTEGER")
    db.execute("UPDATE conversations SET current = (SELECT MAX(id) FROM messages m WHERE m.conversation = "
               "conversations.id)")
    db.execute("CREATE INDEX IF NOT EXISTS messages_by_parent ON messages(parent)")
    db.execute("COMMIT")


def _message(r) -> StoredMessage:
    parent = r[8] if type(r[8]) is int else None
    return StoredMessage(*r[:5], _stats(r[5]), r[6], r[7] if isinstance(r[7], str) else "", parent, _tools(r[9]))


def _tools_json(tools) -> str | None:
    """Tool rounds from outside (an import) as they are stored: only what _tools keeps."""
    try:
        kept = _tools(json.dumps(list(tools))) if tools else ()
    except (TypeError, ValueError, RecursionError):
        return None
    return json.dumps(list(kept)) if kept else None


def _tools(raw) -> tuple:
    """A reply's tool rounds as stored; what is damaged is left out, never the message."""
    try:
        value = json.loads(raw) if raw else []
    except (ValueError, TypeError, RecursionError):
        return ()
    if not isinstance(value, list):
        return ()
    rounds = []
    for r in value:
        if not isinstance(r, dict) or not isinstance(r.get("calls", []), list):
            continue
        calls = tuple(c for c in r.get("calls", []) if isinstance(c, dict) and isinstance(c.get("id"), str)
                      and isinstance(c.get("name"), str))
        if not calls:
            continue
        rounds.append({"text": r.get("text") if isinstance(r.get("text"), str) else "",
                       "reasoning": r.get("reasoning") if isinstance(r.get("reasoning"), str) else "",
                       "calls": calls})
    return tuple(rounds)


def _stats(raw) -> dict | None:
    try:
        value = json.loads(raw) if raw else None
    except (ValueError, TypeError, RecursionError):
        return None  # a damaged figure line costs the figures, never the message
    return value if isinstance(value, dict) else None


def _this_process() -> str:
    return f"{os.getpid()}:{psutil.Process().create_time():.3f}"


def _alive(writer: str | None) -> bool:
    """Whether the process that wrote `writer` (pid and start time: pids are reused) still runs."""
    try:
        pid, started = str(writer).split(":")
        return f"{psutil.Process(int(pid)).create_time():.3f}" == started
    except (ValueError, psutil.Error):
        return False


def _is_full(e: sqlite3.Error) -> bool:
    return getattr(e, "sqlite_errorcode", None) == 13 or "database or disk is full" in str(e)
