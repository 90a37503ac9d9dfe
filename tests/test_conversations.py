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


def test_regenerate_and_edit_make_branches_and_the_old_ones_stay(tmp_path):
    store = ConversationStore(tmp_path / "chats.db")
    c = store.create()
    hi = store.add(c.id, "user", "Hi")
    hello = store.add(c.id, "assistant", "Hello!", stats={"ttft_ms": 40.0})
    joke = store.add(c.id, "user", "Tell me a joke")
    no = store.add(c.id, "assistant", "No.")
    # regenerate: a second reply in the first one's place
    again = store.add(c.id, "assistant", "Why did the GGUF cross the road?", parent=joke.id)
    assert [m.content for m in store.messages(c.id)] == ["Hi", "Hello!", "Tell me a joke",
                                                         "Why did the GGUF cross the road?"]
    assert store.variants(no.id) == store.variants(again.id) == [no.id, again.id]
    # edit: a new branch from the edited message's place, the old turns kept on theirs
    edited = store.add(c.id, "user", "Tell me a fact", parent=hello.id)
    fact = store.add(c.id, "assistant", "Octopuses have three hearts.")
    assert [m.id for m in store.messages(c.id)] == [hi.id, hello.id, edited.id, fact.id]
    assert store.variants(edited.id) == [joke.id, edited.id]
    assert store.messages(c.id)[1].stats == {"ttft_ms": 40.0} and store.messages(c.id)[3].parent == edited.id
    # going back to the joke shows its newest reply; then the first reply
    store.switch_to(joke.id)
    assert [m.id for m in store.messages(c.id)] == [hi.id, hello.id, joke.id, again.id]
    store.switch_to(no.id)
    assert [m.content for m in store.messages(c.id)][-1] == "No."
    assert len(store.all_messages(c.id)) == 7
    # the branch survives a restart
    store.close()
    store = ConversationStore(tmp_path / "chats.db")
    assert [m.id for m in store.messages(c.id)] == [hi.id, hello.id, joke.id, no.id]
    # deleting a reply shows the variant beside it; deleting a turn takes what follows it on every branch
    store.delete_from(no.id)
    assert [m.id for m in store.messages(c.id)] == [hi.id, hello.id, joke.id, again.id]
    store.delete_from(joke.id)
    assert [m.id for m in store.messages(c.id)] == [hi.id, hello.id, edited.id, fact.id]
    assert {m.id for m in store.all_messages(c.id)} == {hi.id, hello.id, edited.id, fact.id}
    store.delete_from(hi.id)
    assert store.messages(c.id) == [] and store.variants(hi.id) == []
    store.close()


def test_a_parent_from_another_chat_is_refused(tmp_path):
    import pytest

    store = ConversationStore(tmp_path / "chats.db")
    a, b = store.create(), store.create()
    m = store.add(a.id, "user", "Hi")
    with pytest.raises(ValueError):
        store.add(b.id, "user", "Hi", parent=m.id)
    assert store.messages(b.id) == []
    store.close()


def test_an_older_file_becomes_one_branch_per_chat_and_a_damaged_mark_shows_the_newest(tmp_path):
    import sqlite3

    path = tmp_path / "v3.sqlite3"
    db = sqlite3.connect(path)  # a schema-3 file, as the previous version wrote it
    db.executescript("""
        CREATE TABLE conversations (id INTEGER PRIMARY KEY, title TEXT NOT NULL, created REAL NOT NULL,
                                    updated REAL NOT NULL);
        CREATE TABLE messages (id INTEGER PRIMARY KEY, conversation INTEGER NOT NULL, role TEXT NOT NULL,
                               content TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'done', stats TEXT,
                               created REAL NOT NULL, writer TEXT, reasoning TEXT);
        INSERT INTO conversations VALUES (1, 'One', 0, 0), (2, 'Two', 0, 0);
        INSERT INTO messages VALUES (1, 1, 'user', 'a', 'done', NULL, 0, NULL, NULL),
                                    (2, 2, 'user', 'x', 'done', NULL, 0, NULL, NULL),
                                    (3, 1, 'assistant', 'b', 'done', NULL, 0, NULL, 'why'),
                                    (4, 2, 'assistant', 'y', 'done', NULL, 0, NULL, NULL),
                                    (5, 1, 'user', 'c', 'done', NULL, 0, NULL, NULL);
        PRAGMA user_version=3;
    """)
    db.close()
    store = ConversationStore(path)
    assert [(m.content, m.parent) for m in store.messages(1)] == [("a", None), ("b", 1), ("c", 3)]
    assert [(m.content, m.parent) for m in store.messages(2)] == [("x", None), ("y", 2)]
    assert store.messages(1)[1].reasoning == "why"
    store.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE conversations SET current=999 WHERE id=1")  # a mark pointing nowhere
    db.execute("UPDATE messages SET parent=5 WHERE id=3")  # and a loop of parents
    db.commit()
    db.close()
    store = ConversationStore(path)
    assert [m.content for m in store.messages(1)][-1] == "c"
    store.switch_to(1)  # ends, whatever the damage
    assert store.messages(1)
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
