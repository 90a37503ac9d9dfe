"""Names from outside (a user, a model file, the Hub, a client) as file names, and paths kept inside their folder.

Every place that turns outside input into a path goes through `check_name` (one component) or
`check_relative` (a Hub file name such as `Q8_0/model.gguf`), then `inside` before it writes, moves
or deletes anything: a name never decides where on the disk Lantern acts.
"""
from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path, PurePosixPath

from basics.errors import LanternError

MAX_NAME_BYTES = 120  # well under every file system's 255, with room for ".partial" and such
MAX_RELATIVE_PARTS = 8
# Windows gives these names to devices in every folder, with any extension (CON.txt is the console too).
WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"]
    + [f"{p}{i}" for p in ("COM", "LPT") for i in [*range(1, 10), "¹", "²", "³"]]
)
_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')  # separators of every platform, and Windows' others


class UnsafeName(LanternError):
    """A name that may not become a file or folder name."""


def check_name(name: object, *, what: str = "name") -> str:
    """`name` if it may be one file or folder name on every platform; UnsafeName says why not."""
    if not isinstance(name, str):
        raise UnsafeName(f"The {what} must be text, got {type(name).__name__}.")
    shown = ascii(name) if len(name) <= 80 else ascii(name[:80]) + "..."
    if not name:
        raise UnsafeName(f"The {what} is empty.")
    if name in (".", ".."):
        raise UnsafeName(f"The {what} {shown} names a folder, not a file.")
    bad = _FORBIDDEN.search(name)
    if bad:
        kind = "a path separator" if bad.group() in "/\\" else "a control character" if bad.group() < " " or \
            bad.group() == "\x7f" else f"the character {bad.group()!r}"
        raise UnsafeName(f"The {what} {shown} contains {kind}; use letters, digits, '-', '_' and '.'.")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in name):
        raise UnsafeName(f"The {what} {shown} is not valid Unicode.")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise UnsafeName(f"The {what} is longer than {MAX_NAME_BYTES} bytes.")
    if name[-1] in ". " or name[0] == " ":
        raise UnsafeName(f"The {what} {shown} starts or ends with a space or a dot (Windows drops those).")
    if name.split(".")[0].rstrip(" ").upper() in WINDOWS_RESERVED:
        raise UnsafeName(f"The {what} {shown} is a device name on Windows.")
    return name


def check_relative(path: object, *, what: str = "file name") -> PurePosixPath:
    """A relative path of safe components separated by '/' (a Hub file name); UnsafeName otherwise."""
    if not isinstance(path, str):
        raise UnsafeName(f"The {what} must be text, got {type(path).__name__}.")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise UnsafeName(f"The {what} {ascii(path[:80])} is an absolute path.")
    parts = path.split("/")
    if len(parts) > MAX_RELATIVE_PARTS:
        raise UnsafeName(f"The {what} {ascii(path[:80])} is nested too deep.")
    for part in parts:
        check_name(part, what=what)
    return PurePosixPath(path)


def inside(root: Path, path: Path, *, what: str = "path") -> Path:
    """`path` resolved, when it lies strictly inside `root` (links followed); UnsafeName otherwise."""
    base = Path(os.path.realpath(root))
    target = Path(os.path.realpath(path))
    if target == base or base not in target.parents:
        raise UnsafeName(f"The {what} {path} lies outside {root}; Lantern does not touch it.")
    return target


def same_ignoring_case(a: str, b: str) -> bool:
    """Two names that one file system would treat as one (macOS and Windows ignore case)."""
    fold = lambda s: unicodedata.normalize("NFC", s).casefold()  # noqa: E731
    return fold(a) == fold(b)
