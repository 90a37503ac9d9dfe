"""Files Lantern owns may be damaged when read: moved aside, the user told once, nothing else lost.
Two processes on one data folder, and a full disk."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from app.conversations import ConversationStore
from app.settings import Settings, load_settings, save_settings
from files import owned_files
from models.library import ModelLibrary

ROOT = Path(__file__).resolve().parent.parent
BAD_SETTINGS = {
    "not json": b"{not json",
    "schema_version string": b'{"schema_version": "1"}',
    "schema_version null": b'{"schema_version": null}',
    "schema_version list": b'{"schema_version": [1]}',
    "schema_version 1e400": b'{"schema_version": 1e400}',
    "schema_version bool": b'{"schema_version": true}',
    "deep nesting": b'{"schema_version": ' + b"[" * 100000 + b"]" * 100000 + b"}",
    "a list": b"[1, 2]",
    "bad value": b'{"temperature": "hot"}',
    "not utf-8": b'{"system_prompt": "\xff\xfe"}',
    "newer Lantern": b'{"schema_version": 99}',
}


def damaged(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f"{name}.damaged-*"))


@pytest.mark.parametrize("case", sorted(BAD_SETTINGS))
def test_damaged_settings_are_moved_aside_and_defaults_used(case, tmp_path):
    path = tmp_path / "settings.json"
    path.write_bytes(BAD_SETTINGS[case])
    owned_files.take_notices()
    assert load_settings(path) == Settings()
    (kept,) = damaged(tmp_path, "settings.json")
    assert kept.read_bytes() == BAD_SETTINGS[case]  # nothing lost
    (notice,) = owned_files.take_notices()
    assert "settings.json" in notice and kept.name in notice
    save_settings(path, Settings(temperature=0.3))  # and Lantern goes on with a fresh file
    assert load_settings(path).temperature == 0.3


BAD_INDEX = {
    "not json": b"\x00\x01garbage",
    "a list": b"[]",
    "models is a dict": b'{"models": {}}',
    "entry is a string": b'{"models": ["x"]}',
    "name is a number": b'{"models": [{"name": 5}]}',
    "missing fields": b'{"models": [{"name": "a"}]}',
    "size is a string": json.dumps({"models": [{
        "name": "a", "path": "/x", "backend": "llamacpp", "format": "gguf", "quant": "Q4_0", "size_bytes": "big",
        "context_length": 1, "architecture": "llama", "chat_template": True, "source": "pull"}]}).encode(),
    "name escapes": json.dumps({"models": [{
        "name": "..", "path": "/x", "backend": "llamacpp", "format": "gguf", "quant": "Q4_0", "size_bytes": 1,
        "context_length": 1, "architecture": "llama", "chat_template": True, "source": "pull"}]}).encode(),
}


@pytest.mark.parametrize("case", sorted(BAD_INDEX))
def test_a_damaged_model_index_is_moved_aside_and_the_built_ins_remain(case, tmp_path, smollm2_path):
    library = ModelLibrary(tmp_path / "data")
    library.root.mkdir()
    library.index.write_bytes(BAD_INDEX[case])
    owned_files.take_notices()
    names = [m.name for m in library.list()]
    assert "smollm2-135m-instruct" in names and len(names) == 2
    (kept,) = damaged(library.root, "models.json")
    assert kept.read_bytes() == BAD_INDEX[case]
    assert len(owned_files.take_notices()) == 1
    copy = tmp_path / "m.gguf"
    shutil.copy(smollm2_path, copy)
    library.import_path(copy, name="again")
    assert library.find("again") is not None


@pytest.mark.parametrize("content", [b"this is not a database", b"SQLite format 3\x00" + b"\xff" * 4000, b""])
def test_a_damaged_conversation_store_is_moved_aside(content, tmp_path):
    path = tmp_path / "conversations.sqlite3"
    path.write_bytes(content)
    owned_files.take_notices()
    store = ConversationStore(path)
    c = store.create("fresh")
    store.add(c.id, "user", "hi")
    assert [m.content for m in store.messages(c.id)] == ["hi"]
    store.close()
    if content:
        (kept,) = damaged(tmp_path, "conversations.sqlite3")
        assert kept.read_bytes() == content
        assert len(owned_files.take_notices()) == 1


def test_a_store_of_another_shape_is_moved_aside(tmp_path):
    path = tmp_path / "conversations.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE messages (x TEXT)")
    db.commit()
    db.close()
    store = ConversationStore(path)
    assert store.conversations() == []
    store.close()
    assert len(damaged(tmp_path, "conversations.sqlite3")) == 1


def test_a_reply_being_written_by_another_live_process_is_not_marked_cut_off(tmp_path):
    path = tmp_path / "conversations.sqlite3"
    code = ("import sys, time; from pathlib import Path; from app.conversations import ConversationStore\n"
            "s = ConversationStore(Path(sys.argv[1])); c = s.create('x')\n"
            "s.add(c.id, 'assistant', 'half a reply', status='streaming'); print('written', flush=True)\n"
            "sys.stdin.readline()\n")
    writer = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "written"
        second = ConversationStore(path)  # a second window or CLI on the same data folder
        (c,) = second.conversations()
        assert [m.status for m in second.messages(c.id)] == ["streaming"]
        second.close()
    finally:
        writer.stdin.close()
        writer.wait(30)
    third = ConversationStore(path)  # the writer is gone now: its reply was cut off
    (c,) = third.conversations()
    assert [m.status for m in third.messages(c.id)] == ["cut_off"]
    third.close()


def test_two_processes_importing_at_once_lose_no_entry(tmp_path, smollm2_path):
    data = tmp_path / "data"
    code = ("import sys; from pathlib import Path; from models.library import ModelLibrary\n"
            "lib = ModelLibrary(Path(sys.argv[1]))\n"
            "for i in range(6):\n"
            "    lib.import_path(sys.argv[2], name=f'{sys.argv[3]}-{i}', link=True)\n")
    env = {**os.environ, "LANTERN_CACHE_DIR": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(data), str(smollm2_path), who], cwd=ROOT, env=env)
             for who in ("a", "b")]
    assert [p.wait(300) for p in procs] == [0, 0]
    names = {m.name for m in ModelLibrary(data).list() if m.source == "import"}
    assert names == {f"{who}-{i}" for who in "ab" for i in range(6)}


def test_a_full_disk_is_named_and_leaves_no_temporary_file(tmp_path):
    """RLIMIT_FSIZE in a child stands in for a full disk (EFBIG, like ENOSPC, is a failed write)."""
    code = ("import resource, sys; from pathlib import Path\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
            "from app.settings import Settings, save_settings\n"
            "from basics.errors import LanternError\n"
            "from files.owned_files import atomic_write\n"
            "try:\n"
            "    atomic_write(Path(sys.argv[1]) / 'models.json', 'x' * 100000)\n"
            "except LanternError as e:\n"
            "    print(e)\n"
            "try:\n"
            "    save_settings(Path(sys.argv[1]) / 'settings.json', Settings(system_prompt='y' * 100000))\n"
            "except LanternError as e:\n"
            "    print(e)\n")
    (tmp_path / "settings.json").write_text(json.dumps({"temperature": 0.5}))
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("The disk is full (") and str(tmp_path) in line for line in lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"]  # no temporary files
    assert json.loads((tmp_path / "settings.json").read_text()) == {"temperature": 0.5}  # the old one intact
