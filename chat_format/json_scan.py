"""Reading JSON that is still being generated: where a value ends, and a call object's fields so far."""
from __future__ import annotations

import json
import re

_WS = " \t\r\n"


def skip_ws(s: str, i: int) -> int:
    while i < len(s) and s[i] in _WS:
        i += 1
    return i


def value_end(s: str, i: int) -> int | None:
    """The index just after the JSON value starting at s[i] (after any whitespace), or None while incomplete."""
    i = skip_ws(s, i)
    if i >= len(s):
        return None
    c = s[i]
    if c == '"':
        return _string_end(s, i)
    if c in "{[":
        depth = 0
        for m in _STRUCTURE.finditer(s, i):  # strings are skipped whole, in C
            t = m.group()
            if t == '"':
                return None  # a string still open
            if t in "{[":
                depth += 1
            elif t in "}]":
                depth -= 1
                if depth == 0:
                    return m.end()
        return None
    j = i  # a number or a literal ends at a delimiter; at the end of the text it may still grow
    while j < len(s) and s[j] not in _WS + ",]}":
        j += 1
    return j if j < len(s) else None


_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]]|"')
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _string_end(s: str, i: int) -> int | None:
    m = _STRING.match(s, i)
    return m.end() if m else None


def call_fields(s: str, i: int, name_key: str, args_key: str) -> tuple[str | None, str, bool, int | None]:
    """Read a call object `{"name": ..., "arguments": {...}}` starting at s[i], however far it has come.

    Returns (name or None, the arguments' text so far, whether the arguments are complete, the index after
    the object or None). The name is given only once its string is complete.
    """
    name, args, args_done = None, "", False
    i = skip_ws(s, i)
    if i >= len(s) or s[i] != "{":
        return None, "", False, None
    i += 1
    while True:
        i = skip_ws(s, i)
        if i >= len(s):
            return name, args, args_done, None
        if s[i] == "}":
            return name, args, args_done, i + 1
        if s[i] == ",":
            i += 1
            continue
        key_end = _string_end(s, i) if s[i] == '"' else None
        if key_end is None:
            return name, args, args_done, None
        key = json.loads(s[i:key_end])
        i = skip_ws(s, key_end)
        if i >= len(s) or s[i] != ":":
            return name, args, args_done, None
        start = skip_ws(s, i + 1)
        end = value_end(s, start)
        if key == name_key and end is not None and s[start] == '"':
            name = json.loads(s[start:end])
        elif key == args_key:
            args, args_done = (s[start:end], True) if end is not None else (s[start:].rstrip(), False)
        if end is None:
            return name, args, args_done, None
        i = end
