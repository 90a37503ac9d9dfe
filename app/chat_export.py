"""Chats out and in: Markdown and JSON for one chat, a zip of every chat, and imports of Lantern's JSON, plain
OpenAI message lists and ChatGPT's export (conversations.json, alone or in its zip). Qt-free.

An import file is hostile until checked: its size, depth and every field's type are checked before anything is
written, and a whole import goes in one transaction or not at all.
"""
from __future__ import annotations

import io
import json
import re
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from app.attachments import split_images
from app.conversations import ConversationStore, ImportedChat, ImportedMessage, StoredMessage
from basics.errors import LanternError
from files.owned_files import atomic_write

FORMAT = "lantern-chat"
VERSION = 1
MAX_IMPORT_BYTES = 256 << 20  # a ChatGPT export of years of chats is tens of MB
MAX_MESSAGES = 200_000
ROLES = ("user", "assistant")
_NAME_UNSAFE = re.compile(r"[^\w ,()+-]+")  # no dots: no "..", no hidden files


class ChatImportError(LanternError):
    """An import file Lantern cannot read; nothing of it was imported."""


@dataclass
class ImportResult:
    conversations: list[int]
    messages: int
    skipped: dict[str, int] = field(default_factory=dict)  # what was left out, by why ("system messages": 2)

    def summary(self) -> str:
        n, m = len(self.conversations), self.messages
        text = f"Imported {n} chat{'s' if n != 1 else ''} ({m:,} message{'s' if m != 1 else ''})."
        if self.skipped:
            text += " Left out: " + ", ".join(f"{n} {why}" for why, n in self.skipped.items()) + "."
        return text


def figures_text(stats: dict | None) -> str:
    """A reply's figures in plain words, one line: how soon it began, how fast it wrote, what was reused, who."""
    if not stats:
        return ""
    first = _number(stats.get("ttft_ms")) / 1000
    parts = [f"{first:.1f} s to the first word" if first >= 0.1 else "began at once",
             f"{_number(stats.get('decode_tokens_per_s')):.0f} tokens a second"]
    if cached := _number(stats.get("cached_tokens")):
        parts.append(f"reused {cached:,.0f} of {_number(stats.get('prompt_tokens')):,.0f} tokens")
    if stats.get("model"):
        parts.append(str(stats["model"])[:80])
    return " · ".join(parts)


# -- out -----------------------------------------------------------------------------------------

def chat_markdown(store: ConversationStore, conversation: int) -> str:
    """The branch on screen as Markdown: a heading per speaker, thinking folded, figures in italics."""
    title = next((c.title for c in store.conversations() if c.id == conversation), "Chat")
    out = [f"# {title}", ""]
    for m in store.messages(conversation):
        model = (m.stats or {}).get("model")
        out += [f"## {'You' if m.role == 'user' else 'Assistant'}" + (f" ({model})" if model else ""), ""]
        out += _rounds_markdown(m.tools)
        if m.reasoning:
            out += ["<details><summary>Thinking</summary>", "", m.reasoning, "", "</details>", ""]
        images, at = split_images(m.content) if m.role == "user" else ([], 0)
        out += [*(f"*(image: {name})*" for _, name in images), m.content[at:], ""]
        if m.role == "assistant" and (figures := figures_text(m.stats)):
            out += [f"*{figures}*", ""]
    return "\n".join(out)


def _rounds_markdown(rounds) -> list[str]:
    """A reply's tool rounds: what the model said, each call with its arguments, each result folded."""
    out = []
    for r in rounds:
        if r.get("text"):
            out += [r["text"], ""]
        for c in r.get("calls", ()):
            try:
                arguments = json.dumps(c.get("arguments"), indent=2, ensure_ascii=False)
            except (TypeError, ValueError):
                arguments = str(c.get("arguments"))
            out += [f"**Tool call** `{c.get('server', '')}/{c.get('tool', c.get('name', ''))}` ({c.get('status', '')})",
                    "", "```json", arguments, "```", "",
                    "<details><summary>Result</summary>", "", "```", str(c.get("result", "")), "```", "",
                    "</details>", ""]
    return out


def chat_json(store: ConversationStore, conversation: int) -> dict:
    """The chat in the OpenAI messages shape (the branch on screen), each with its reasoning and figures under
    "lantern"; messages of the other branches follow in "branches", so an import gives back the whole tree."""
    chat = next((c for c in store.conversations() if c.id == conversation), None)
    if chat is None:
        raise LanternError(f"There is no chat {conversation}.")
    shown = store.messages(conversation)
    on_screen = {m.id for m in shown}
    return {"format": FORMAT, "version": VERSION, "title": chat.title, "created": chat.created,
            "updated": chat.updated, "messages": [_openai(m) for m in shown],
            "branches": [_openai(m) for m in store.all_messages(conversation) if m.id not in on_screen]}


def _openai(m: StoredMessage) -> dict:
    message = {"role": m.role, "content": m.content}
    if m.reasoning:
        message["reasoning_content"] = m.reasoning
    message["lantern"] = {"id": m.id, "parent": m.parent, "status": m.status, "stats": m.stats, "created": m.created}
    if m.tools:  # the tool rounds before the answer (the OpenAI shape has no place for them in one message)
        message["lantern"]["tools"] = list(m.tools)
    return message


def archive(store: ConversationStore, path: Path) -> int:
    """Every chat as JSON and Markdown in one zip file at `path`; returns how many chats."""
    buffer = io.BytesIO()
    chats = store.conversations()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for c in chats:
            name = f"chats/{c.id:05d} {file_title(c.title)}"
            z.writestr(name + ".json", json.dumps(chat_json(store, c.id), ensure_ascii=False, indent=1))
            z.writestr(name + ".md", chat_markdown(store, c.id))
    atomic_write(path, buffer.getvalue())  # the old archive or the new one, never half
    return len(chats)


def file_title(title: str) -> str:
    """A chat title as a safe file name inside the zip (titles are the user's, or an imported file's, text)."""
    name = _NAME_UNSAFE.sub("_", title).strip(" .")[:60]
    return name or "chat"


# -- in ------------------------------------------------------------------------------------------

def import_file(store: ConversationStore, path: Path) -> ImportResult:
    """Import every chat in `path` (Lantern JSON or zip, an OpenAI message list, ChatGPT's conversations.json or
    its zip). Raises ChatImportError with the reason, having imported nothing, for a file it cannot read."""
    try:
        size = path.stat().st_size
        if size > MAX_IMPORT_BYTES:
            raise ChatImportError(f"{path.name} is {size >> 20} MB; Lantern imports files up to "
                               f"{MAX_IMPORT_BYTES >> 20} MB.")
        data = path.read_bytes()
    except OSError as e:
        raise ChatImportError(f"{path.name} cannot be read: {e.strerror or e}") from None
    documents = _documents(data, path.name)
    chats, skipped = [], {}
    for doc in documents:
        chats += [c for c in _chats(doc, skipped) if c.messages]
    if not chats:
        raise ChatImportError(f"{path.name} holds no chats Lantern can read.")
    if sum(len(c.messages) for c in chats) > MAX_MESSAGES:
        raise ChatImportError(f"{path.name} holds more than {MAX_MESSAGES:,} messages.")
    ids = store.import_conversations(chats)
    return ImportResult(ids, sum(len(c.messages) for c in chats), skipped)


def _documents(data: bytes, name: str) -> list:
    if data[:4] == b"PK\x03\x04":
        return _zip_documents(data, name)
    return [_json(data, name)]


def _zip_documents(data: bytes, name: str) -> list:
    docs = []
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            members = [i for i in z.infolist() if i.filename.endswith(".json") and not i.is_dir()]
            # ChatGPT's zip: conversations.json (beside user.json and others); Lantern's: chats/*.json
            chosen = [i for i in members if i.filename.rsplit("/", 1)[-1] == "conversations.json"] or members
            if sum(i.file_size for i in chosen) > MAX_IMPORT_BYTES:  # a zip bomb says so in its directory...
                raise ChatImportError(f"{name} unpacks to more than {MAX_IMPORT_BYTES >> 20} MB.")
            total = 0
            for info in chosen:
                with z.open(info) as f:
                    raw = f.read(MAX_IMPORT_BYTES + 1 - total)  # ...and one that lies about it stops here
                total += len(raw)
                if total > MAX_IMPORT_BYTES:
                    raise ChatImportError(f"{name} unpacks to more than {MAX_IMPORT_BYTES >> 20} MB.")
                docs.append(_json(raw, f"{name}: {info.filename}"))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError, zlib.error) as e:
        raise ChatImportError(f"{name} is not a zip file Lantern can read: {e}") from None
    if not docs:
        raise ChatImportError(f"{name} holds no JSON files.")
    return docs


def _json(data: bytes, name: str):
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ChatImportError(f"{name} is not JSON: {str(e)[:120]}") from None


def _chats(doc, skipped: dict) -> list[ImportedChat]:
    if isinstance(doc, dict) and doc.get("format") == FORMAT:
        return [_lantern_chat(doc, skipped)]
    if isinstance(doc, list) and doc and all(isinstance(c, dict) and "mapping" in c for c in doc):
        return [chat for c in doc if (chat := _chatgpt_chat(c, skipped)) is not None]
    if isinstance(doc, dict) and "mapping" in doc:
        return [chat] if (chat := _chatgpt_chat(doc, skipped)) is not None else []
    messages = doc.get("messages") if isinstance(doc, dict) else doc
    if isinstance(messages, list) and messages and all(isinstance(m, dict) and "role" in m for m in messages):
        title = doc.get("title") if isinstance(doc, dict) else None
        return [_linear_chat(messages, title, skipped)]
    raise ChatImportError("The file is neither a Lantern chat, a list of OpenAI messages nor a ChatGPT export.")


def _lantern_chat(doc: dict, skipped: dict) -> ImportedChat:
    shown, others = doc.get("messages"), doc.get("branches") or []
    if not isinstance(shown, list) or not isinstance(others, list):
        raise ChatImportError("A Lantern chat's messages and branches must be lists.")
    messages, current = [], None
    for i, m in enumerate([*shown, *others]):
        if not isinstance(m, dict):
            raise ChatImportError(f"Message {i} is not an object.")
        extra = m.get("lantern") if isinstance(m.get("lantern"), dict) else {}
        key, parent = extra.get("id"), extra.get("parent")
        key = key if _is_key(key) else f"m{i}"
        parent = parent if _is_key(parent) else (messages[-1].key if messages and i < len(shown) else None)
        message = _message(m, key, parent, skipped, extra)
        if message is not None:
            messages.append(message)
            if i < len(shown):
                current = message.key
    by_key = {m.key: m for m in messages}  # parents first, whatever order the file lists them in
    order = _tree_order({m.key: {"parent": m.parent} for m in messages})
    return ImportedChat(_title(doc.get("title")), _time(doc.get("created")), _time(doc.get("updated")),
                        [by_key[k] for k in order], current)


def _linear_chat(items: list, title, skipped: dict) -> ImportedChat:
    messages = []
    for i, m in enumerate(items):
        message = _message(m, f"m{i}", messages[-1].key if messages else None, skipped)
        if message is not None:
            messages.append(message)
    now = time.time()
    first_user = next((m.content for m in messages if m.role == "user"), "Imported chat")
    return ImportedChat(_title(title or first_user), now, now, messages, messages[-1].key if messages else None)


def _chatgpt_chat(c: dict, skipped: dict) -> ImportedChat | None:
    """ChatGPT's export: a tree of nodes {id: {message, parent, children}}, current_node the branch on screen."""
    mapping = c.get("mapping")
    if not isinstance(mapping, dict):
        raise ChatImportError("A ChatGPT conversation's mapping must be an object.")
    messages, kept = [], {}
    for key in _tree_order(mapping):
        node = mapping[key]
        parent = _kept_ancestor(mapping, node.get("parent"), kept)
        raw = node.get("message")
        if not isinstance(raw, dict):
            continue  # the root node carries no message
        author = raw.get("author") if isinstance(raw.get("author"), dict) else {}
        content = raw.get("content") if isinstance(raw.get("content"), dict) else {}
        parts = content.get("parts") if isinstance(content.get("parts"), list) else []
        text = "\n".join(p for p in parts if isinstance(p, str))
        if any(not isinstance(p, str) for p in parts):
            skipped["images and files"] = skipped.get("images and files", 0) + 1
        item = {"role": author.get("role"), "content": text}
        message = _message(item, key, parent, skipped, {"created": raw.get("create_time")})
        if message is not None:
            messages.append(message)
            kept[key] = message
    current = _kept_ancestor(mapping, c.get("current_node"), kept)
    if not messages:
        return None
    return ImportedChat(_title(c.get("title")), _time(c.get("create_time")), _time(c.get("update_time")), messages,
                        current if current in kept else messages[-1].key)


def _kept_ancestor(mapping: dict, key, kept: dict):
    """`key`, or its nearest ancestor that was imported (past system, tool and empty nodes); None if none."""
    for _ in range(len(mapping) + 1):  # a loop of parents ends here
        if not _is_key(key):
            return None
        if key in kept:
            return key
        node = mapping.get(key) if isinstance(key, str) else None
        key = node.get("parent") if isinstance(node, dict) else None
    return None


def _tree_order(mapping: dict) -> list[str]:
    """Node ids parents first (a node whose parent is missing or loops counts as a root)."""
    order, seen = [], set()
    children: dict = {}
    for key, node in mapping.items():
        if not isinstance(node, dict):
            raise ChatImportError(f"Node {str(key)[:40]} is not an object.")
        parent = node.get("parent")
        children.setdefault(parent if _is_key(parent) and parent in mapping else None, []).append(key)
    roots = children.get(None, [])
    for start in [*roots, *mapping]:  # keys left over sit on a loop of parents: each becomes a root
        stack = [start]
        while stack:
            key = stack.pop()
            if key in seen:
                continue
            seen.add(key)
            order.append(key)
            stack += reversed(children.get(key, []))
    return order


def _message(m, key, parent, skipped: dict, extra: dict | None = None) -> ImportedMessage | None:
    if not isinstance(m, dict):
        raise ChatImportError(f"Message {str(key)[:40]} is not an object.")
    role, content = m.get("role"), m.get("content")
    if isinstance(content, list):  # OpenAI content parts: the text ones
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    if role not in ROLES:
        why = f"{role} messages" if role in ("system", "tool", "developer", "function") else "messages of no known role"
        skipped[why] = skipped.get(why, 0) + 1
        return None
    if not isinstance(content, str) or (not content and not m.get("tool_calls")):
        skipped["empty messages"] = skipped.get("empty messages", 0) + 1
        return None
    extra = extra or {}
    reasoning = m.get("reasoning_content") if isinstance(m.get("reasoning_content"), str) else ""
    stats = extra.get("stats") if isinstance(extra.get("stats"), dict) else None
    status = extra.get("status") if extra.get("status") in ("done", "stopped", "cut_off", "error") else "done"
    tools = tuple(extra["tools"]) if isinstance(extra.get("tools"), list) else ()
    return ImportedMessage(key, parent, role, content, reasoning, stats, status, _time(extra.get("created")), tools)


def _is_key(value) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _title(value) -> str:
    text = " ".join(value.split()) if isinstance(value, str) else ""
    return (text[:47].rstrip() + "…" if len(text) > 48 else text) or "Imported chat"


def _time(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and \
        0 <= value < 1e11 else time.time()


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
