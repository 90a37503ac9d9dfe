"""Export and import of chats: Markdown, Lantern's JSON (branches and all), a zip of every chat, OpenAI message
lists and ChatGPT's export; every bad file a clear error with nothing imported."""
from __future__ import annotations

import json
import zipfile

import pytest

from app.chat_export import MAX_IMPORT_BYTES, ChatImportError, archive, chat_json, chat_markdown, import_file
from app.conversations import ConversationStore

STATS = {"ttft_ms": 250.0, "decode_tokens_per_s": 41.0, "cached_tokens": 30, "prompt_tokens": 40, "model": "smol"}


def _chat_with_branches(store: ConversationStore) -> int:
    c = store.create("Lighthouses")
    store.add(c.id, "user", "Tell me about lighthouses.")
    first = store.add(c.id, "assistant", "They guide ships.", stats=STATS, reasoning="Keep it short.")
    store.add(c.id, "user", "And fog?")
    store.add(c.id, "assistant", "Fog horns.")
    store.add(c.id, "assistant", "They sound horns.", parent=first.id + 1)  # a regenerated reply
    edited = store.add(c.id, "user", "And at night?", parent=first.id)  # an edit: a branch from the first reply
    store.add(c.id, "assistant", "Their lamps turn.", parent=edited.id)
    return c.id


def _tree(store: ConversationStore, conversation: int) -> list[tuple]:
    """Every message with its role, text, reasoning, figures, status and its parent's text: the shape of the tree."""
    messages = store.all_messages(conversation)
    text = {m.id: m.content for m in messages}
    return sorted((m.role, m.content, m.reasoning, json.dumps(m.stats, sort_keys=True), m.status,
                   text.get(m.parent)) for m in messages)


def test_a_chat_goes_out_as_json_and_comes_back_with_every_branch(tmp_path):
    store = ConversationStore(tmp_path / "a.db")
    cid = _chat_with_branches(store)
    doc = chat_json(store, cid)
    assert [m["content"] for m in doc["messages"]] == ["Tell me about lighthouses.", "They guide ships.",
                                                       "And at night?", "Their lamps turn."]
    assert doc["messages"][1]["reasoning_content"] == "Keep it short." and doc["messages"][1]["lantern"]["stats"] == STATS
    assert len(doc["branches"]) == 3
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(doc))
    other = ConversationStore(tmp_path / "b.db")
    result = import_file(other, path)
    (new,) = result.conversations
    assert result.messages == 7 and result.skipped == {}
    assert _tree(other, new) == _tree(store, cid)
    assert [m.content for m in other.messages(new)] == [m.content for m in store.messages(cid)]  # same branch shown
    assert other.conversations()[0].title == "Lighthouses"
    fog = next(m for m in other.all_messages(new) if m.content == "And fog?")
    assert len(other.variants(fog.id)) == 2  # the edit's branch point came back


def test_markdown_has_the_speakers_thinking_and_figures(tmp_path):
    store = ConversationStore(tmp_path / "a.db")
    cid = _chat_with_branches(store)
    text = chat_markdown(store, cid)
    assert text.startswith("# Lighthouses\n")
    assert "## You\n\nTell me about lighthouses." in text
    assert "## Assistant (smol)\n\n<details><summary>Thinking</summary>\n\nKeep it short.\n\n</details>\n\n" \
           "They guide ships." in text
    assert "*0.2 s to the first word · 41 tokens a second · reused 30 of 40 tokens · smol*" in text
    assert "And fog?" not in text  # the branch on screen only


def test_all_chats_go_out_as_one_zip_and_come_back(tmp_path):
    store = ConversationStore(tmp_path / "a.db")
    _chat_with_branches(store)
    c = store.create("../../etc/passwd\x00 <evil>")  # a title is never a path
    store.add(c.id, "user", "Hi")
    path = tmp_path / "all.zip"
    assert archive(store, path) == 2
    names = zipfile.ZipFile(path).namelist()
    assert len(names) == 4 and all(n.startswith("chats/") and ".." not in n and "\x00" not in n for n in names)
    other = ConversationStore(tmp_path / "b.db")
    result = import_file(other, path)
    assert len(result.conversations) == 2 and result.messages == 8
    assert sorted(c.title for c in other.conversations()) == sorted(c.title for c in store.conversations())


def _chatgpt_conversation() -> dict:
    def node(key, parent, children, role=None, text=None):
        message = None if role is None else {"id": key, "author": {"role": role}, "create_time": 1700000000.0,
                                             "content": {"content_type": "text", "parts": [text]}}
        return {"id": key, "message": message, "parent": parent, "children": children}

    return {"title": "Trip to Lisbon", "create_time": 1700000000.0, "update_time": 1700000100.0,
            "current_node": "a2",
            "mapping": {"root": node("root", None, ["sys"]),
                        "sys": node("sys", "root", ["u1"], "system", ""),
                        "u1": node("u1", "sys", ["a1", "a2"], "user", "Where should I eat?"),
                        "a1": node("a1", "u1", [], "assistant", "Try the Alfama."),
                        "a2": node("a2", "u1", [], "assistant", "Try Belém.")}}


def test_a_chatgpt_export_comes_in_with_its_branches_alone_or_in_its_zip(tmp_path):
    store = ConversationStore(tmp_path / "a.db")
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps([_chatgpt_conversation()]))
    result = import_file(store, path)
    (cid,) = result.conversations
    assert [(m.role, m.content) for m in store.messages(cid)] == [("user", "Where should I eat?"),
                                                                  ("assistant", "Try Belém.")]
    assert len(store.variants(store.messages(cid)[1].id)) == 2
    assert result.skipped == {"system messages": 1}  # the hidden system message, said
    zipped = tmp_path / "export.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("conversations.json", json.dumps([_chatgpt_conversation()]))
        z.writestr("user.json", json.dumps({"id": "user-1", "email": "x@example.com"}))  # beside it, not a chat
        z.writestr("chat.html", "<html></html>")
    assert len(import_file(store, zipped).conversations) == 1
    assert [c.title for c in store.conversations()] == ["Trip to Lisbon", "Trip to Lisbon"]


def test_an_openai_message_list_comes_in_and_what_is_left_out_is_said(tmp_path):
    store = ConversationStore(tmp_path / "a.db")
    path = tmp_path / "messages.json"
    path.write_text(json.dumps({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]},
        {"role": "assistant", "content": "4", "reasoning_content": "Easy."},
        {"role": "tool", "content": "{}", "tool_call_id": "x"}]}))
    result = import_file(store, path)
    (cid,) = result.conversations
    assert [(m.role, m.content, m.reasoning) for m in store.messages(cid)] == [("user", "What is 2+2?", ""),
                                                                               ("assistant", "4", "Easy.")]
    assert result.skipped == {"system messages": 1, "tool messages": 1}
    assert "Left out: 1 system messages, 1 tool messages." in result.summary()
    assert store.conversations()[0].title == "What is 2+2?"


@pytest.mark.parametrize("content, why", [
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "is not JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "is not JSON"),
    (b'{"format": "lantern-chat", "messages": "x"}', "must be lists"),
    (b'{"hello": "world"}', "neither a Lantern chat"),
    (b'[{"mapping": {"a": 5}}]', "is not an object"),
    (b"PK\x03\x04 truncated", "not a zip file"),
    (b'{"messages": [{"role": "system", "content": "only this"}]}', "no chats"),
])
def test_a_bad_file_is_a_clear_error_and_nothing_is_imported(tmp_path, content, why):
    store = ConversationStore(tmp_path / "a.db")
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ChatImportError, match=why):
        import_file(store, path)
    assert store.conversations() == []


def test_loops_of_parents_lose_no_message_and_huge_files_are_refused(tmp_path, monkeypatch):
    store = ConversationStore(tmp_path / "a.db")
    looped = _chatgpt_conversation()
    looped["mapping"]["u1"]["parent"], looped["mapping"]["root"]["parent"] = "a1", "u1"  # u1 -> a1 -> u1
    looped["mapping"]["a1"]["parent"] = ["not", "a", "key"]
    path = tmp_path / "loop.json"
    path.write_text(json.dumps(looped))
    result = import_file(store, path)
    assert sorted(m.content for m in store.all_messages(result.conversations[0])) == [
        "Try Belém.", "Try the Alfama.", "Where should I eat?"]
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("conversations.json", b" " * (MAX_IMPORT_BYTES + 1))
    assert bomb.stat().st_size < 2 << 20
    with pytest.raises(ChatImportError, match="unpacks to more than"):
        import_file(store, bomb)
    monkeypatch.setattr("app.chat_export.MAX_IMPORT_BYTES", 10)
    with pytest.raises(ChatImportError, match="imports files up to"):
        import_file(store, path)
    assert len(store.conversations()) == 1
