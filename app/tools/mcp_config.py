"""The MCP servers the user configured: `mcp.json` in Lantern's data folder, in the `mcpServers` shape that LM Studio,
Claude Desktop and Cursor use, so a user can paste theirs.

    {"mcpServers": {"files": {"command": "npx", "args": ["-y", "..."], "env": {"KEY": "..."}},
                    "search": {"url": "https://.../mcp", "headers": {"Authorization": "Bearer ..."}}}}

Lantern adds one key of its own to a server, `"enabled": true`: a server is started only once the user enabled it
(a pasted file starts nothing). Values are kept as the user gave them, and shown masked. The file may be damaged when
read: a file that is not JSON or not of this shape is moved aside (kept, never deleted) and Lantern starts with none;
one server written wrong is listed as failed, saying why, and the others work.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from basics.errors import LanternError
from files.owned_files import atomic_write, file_lock, move_aside

FILE_NAME = "mcp.json"
MAX_SERVERS = 64
MAX_ARGS = 256
MAX_TEXT = 8192  # a command, an argument, a value, a URL
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
MASK = "••••••"


class McpConfigError(LanternError):
    """A server entry the user gave cannot be used; the message says which and why."""


@dataclass(frozen=True)
class ServerConfig:
    """One server: a command to run (stdio) or a URL (streamable HTTP)."""

    name: str
    command: str = ""
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cwd: str = ""
    url: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    enabled: bool = False
    extra: tuple[tuple[str, object], ...] = ()  # keys of other apps, written back as they were
    problem: str = ""  # why this entry cannot be used ("" when it can)

    @property
    def transport(self) -> str:
        return "http" if self.url else "stdio"

    def shown(self) -> str:
        """What it runs, with every environment value and header masked."""
        if self.url:
            heads = "".join(f" [{k}: {MASK}]" for k, _ in self.headers)
            return f"{self.url}{heads}"
        env = "".join(f"{k}={MASK} " for k, _ in self.env)
        return f"{env}{' '.join([self.command, *self.args])}".strip()

    def to_json(self) -> dict:
        out: dict = dict(self.extra)
        if self.url:
            out["url"] = self.url
            if self.headers:
                out["headers"] = dict(self.headers)
        else:
            out["command"] = self.command
            if self.args:
                out["args"] = list(self.args)
            if self.env:
                out["env"] = dict(self.env)
            if self.cwd:
                out["cwd"] = self.cwd
        out["enabled"] = self.enabled
        return out


@dataclass
class McpConfig:
    servers: list[ServerConfig] = field(default_factory=list)

    def get(self, name: str) -> ServerConfig | None:
        return next((s for s in self.servers if s.name == name), None)


def config_path(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def load_config(path: Path) -> McpConfig:
    """The configured servers; none when there is no file. A damaged file is moved aside and the user told once."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return McpConfig()
    except OSError as e:
        raise McpConfigError(f"{path} cannot be read: {e.strerror or e}") from None
    try:
        return parse_config(data)
    except McpConfigError as e:
        move_aside(path, str(e))
        return McpConfig()


def parse_config(data: bytes | str) -> McpConfig:
    """McpConfigError where the whole file is unusable; a wrong entry becomes a server with its `problem`."""
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise McpConfigError(f"not JSON: {str(e)[:100]}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("mcpServers", {}), dict):
        raise McpConfigError('not an object with "mcpServers" in it')
    entries = raw.get("mcpServers", {})
    if len(entries) > MAX_SERVERS:
        raise McpConfigError(f"{len(entries)} servers; Lantern takes at most {MAX_SERVERS}")
    return McpConfig([server_from_json(name, entry) for name, entry in entries.items()])


def server_from_json(name: str, entry: object) -> ServerConfig:
    """One entry of `mcpServers`; a wrong one keeps its name and says what is wrong."""
    shown = ascii(name[:64]) if isinstance(name, str) else "?"
    if not isinstance(name, str) or not NAME.match(name):
        return ServerConfig(name=_safe_name(name), problem=f"The server name {shown} must be 1 to 64 letters, digits, "
                                                          "spaces, '.', '_' or '-'.")
    try:
        return _server(name, entry)
    except McpConfigError as e:
        return ServerConfig(name=name, problem=str(e))


def _server(name: str, entry: object) -> ServerConfig:
    if not isinstance(entry, dict):
        raise McpConfigError(f"The server {name} must be an object with a command or a url.")
    enabled = entry.get("enabled", False)
    if not isinstance(enabled, bool):
        raise McpConfigError(f'The server {name}: "enabled" must be true or false.')
    known = {"command", "args", "env", "cwd", "url", "headers", "enabled"}
    extra = tuple((k, v) for k, v in entry.items() if k not in known)
    if "url" in entry:
        if "command" in entry:
            raise McpConfigError(f"The server {name} has both a command and a url; give one.")
        url = _text(entry["url"], f"{name}'s url")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise McpConfigError(f"The server {name}'s url must be an http:// or https:// address, got "
                                 f"{ascii(url[:80])}.")
        return ServerConfig(name=name, url=url, headers=_pairs(entry.get("headers", {}), f"{name}'s headers"),
                            enabled=enabled, extra=extra)
    if "command" not in entry:
        raise McpConfigError(f"The server {name} has neither a command (a program to run) nor a url.")
    command = _text(entry["command"], f"{name}'s command")
    args = entry.get("args", [])
    if not isinstance(args, list) or len(args) > MAX_ARGS:
        raise McpConfigError(f"The server {name}'s args must be a list of at most {MAX_ARGS} strings.")
    cwd = _text(entry["cwd"], f"{name}'s cwd") if entry.get("cwd") else ""
    return ServerConfig(name=name, command=command, args=tuple(_text(a, f"{name}'s args", empty=True) for a in args),
                        env=_pairs(entry.get("env", {}), f"{name}'s env"), cwd=cwd, enabled=enabled, extra=extra)


def _text(value: object, what: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty) or len(value) > MAX_TEXT or "\x00" in value:
        raise McpConfigError(f"The server {what} must be text of 1 to {MAX_TEXT} characters without NUL.")
    return value


def _pairs(value: object, what: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or len(value) > MAX_ARGS:
        raise McpConfigError(f"The server {what} must be an object of names and text values.")
    return tuple((_text(k, what), _text(v, what, empty=True)) for k, v in value.items())


def _safe_name(name: object) -> str:
    text = name if isinstance(name, str) else repr(name)
    return re.sub(r"[^A-Za-z0-9 ._-]", "?", text)[:64] or "?"


def replace_server(path: Path, server: ServerConfig, *, old_name: str | None = None) -> McpConfig:
    """Add or change one server (renamed from `old_name`), keeping every other entry exactly as the file has it."""
    with file_lock(path):
        raw = _raw(path)
        entries = raw.setdefault("mcpServers", {})
        if old_name is not None and old_name != server.name:
            entries.pop(old_name, None)
        if server.name in entries and old_name != server.name:
            raise McpConfigError(f"A server named {server.name!r} exists already.")
        entries[server.name] = server.to_json()
        atomic_write(path, json.dumps(raw, indent=2, ensure_ascii=False) + "\n")
    return parse_config(json.dumps(raw))


def remove_server(path: Path, name: str) -> McpConfig:
    with file_lock(path):
        raw = _raw(path)
        raw.setdefault("mcpServers", {}).pop(name, None)
        atomic_write(path, json.dumps(raw, indent=2, ensure_ascii=False) + "\n")
    return parse_config(json.dumps(raw))


def set_enabled(path: Path, name: str, enabled: bool) -> McpConfig:
    """Switch one server on or off (only the "enabled" key of its entry changes)."""
    with file_lock(path):
        raw = _raw(path)
        entry = raw.get("mcpServers", {}).get(name)
        if not isinstance(entry, dict):
            raise McpConfigError(f"There is no server named {name!r} in {path.name}.")
        entry["enabled"] = bool(enabled)
        atomic_write(path, json.dumps(raw, indent=2, ensure_ascii=False) + "\n")
    return parse_config(json.dumps(raw))


def _raw(path: Path) -> dict:
    """The file as JSON, for a change that keeps every other entry; a damaged one is moved aside first."""
    load_config(path)  # moves a damaged file aside
    try:
        raw = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {"mcpServers": {}}
    return raw if isinstance(raw, dict) else {"mcpServers": {}}
