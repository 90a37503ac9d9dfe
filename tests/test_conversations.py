"""The conversation store: newest first, search, edits, and nothing lost to a kill."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from app.conversations import ConversationStore


def test_conversations_newest_first_search_rename_delete(tmp_path):
    store = ConversationStore(tmp_path / "chats.db")
    a = store.create("Trip to Lisbon")
    time.sleep(0.01)
    b = store.create("Python help")
    store.add(a.id, "user", "Where should I eat in Alfama?")
    assert [c.id for c in store.conversations()] == [a.id, b.id]  # a message makes a conversation newest
    assert [c.id for c in store.conversations("alfama")] == [a.id]  # message text
    assert [c.id for c in store.conversations("python")] == [b.id]  # title
    assert store.conversations("100%") == [] and store.conversations("_") == []  # matched literally
    store.rename(b.id, "Rust help")
    assert store.conversations("rust")[0].title == "Rust help"
    store.delete(a.id)
    assert [c.id for c in store.conversations()] == [b.id] and store.messages(a.id) == []
    store.close()


def test_edit_and_resend_replaces_the_later_turns(tmp_path):
    store = ConversationStore(tmp_path / "chats.db")
    c = store.create()
    first = store.add(c.id, "user", "Hi")
    store.add(c.id, "assistant", "Hello!", stats={"ttft_ms": 40.0})
    second = store.add(c.id, "user", "Tell me a joke")
    store.add(c.id, "assistant", "No.")
    store.delete_from(second.id)
    msgs = store.messages(c.id)
    assert [m.content for m in msgs] == ["Hi", "Hello!"] and msgs[1].stats == {"ttft_ms": 40.0}
    assert msgs[0].id == first.id
    store.close()


def test_a_kill_loses_nothing_shown_and_marks_the_streaming_reply_cut_off(tmp_path):
    db = tmp_path / "chats.db"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(os.getcwd())!r})
        from app.conversations import ConversationStore
        store = ConversationStore(__import__("pathlib").Path({str(db)!r}))
        c = store.create("Before the crash")
        store.add(c.id, "user", "Write me a poem")
        reply = store.add(c.id, "assistant", "", status="streaming")
        store.update(reply.id, content="Roses are red,")
        print("shown", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL and "shown" in proc.stdout, proc.stderr
    store = ConversationStore(db)
    (c,) = store.conversations()
    msgs = store.messages(c.id)
    assert [(m.role, m.content, m.status) for m in msgs] == [
        ("user", "Write me a poem", "done"), ("assistant", "Roses are red,", "cut_off")]
    store.close()


def test_a_reply_keeps_its_reasoning_and_an_older_file_gains_the_column(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)  # a schema-2 file, as the previous version wrote it
    db.executescript("""
        CREATE TABLE conversations (id INTEGER PRIMARY KEY, title TEXT NOT NULL, created REAL NOT NULL,
                                    updated REAL NOT NULL);
        CREATE TABLE messages (id INTEGER PRIMARY KEY, conversation INTEGER NOT NULL, role TEXT NOT NULL,
                               content TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'done', stats TEXT,
                               created REAL NOT NULL, writer TEXT);
        INSERT INTO conversations VALUES (1, 'Old', 0, 0);
        INSERT INTO messages VALUES (1, 1, 'user', 'Hi', 'done', NULL, 0, NULL);
        PRAGMA user_version=2;
    """)
    db.close()
    store = ConversationStore(path)
    [old] = store.messages(1)
    assert (old.content, old.reasoning) == ("Hi", "")
    reply = store.add(1, "assistant", "", status="streaming")
    store.update(reply.id, content="4", reasoning="Two and two.")
    store.update(reply.id, content="4.", status="done")  # a later save without reasoning keeps it
    assert [(m.content, m.reasoning) for m in store.messages(1)] == [("Hi", ""), ("4.", "Two and two.")]
    store.close()
