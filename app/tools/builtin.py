"""Lantern's own tools, each off until the user turns it on: files in one folder the user picked (listed and read,
never outside it: every path resolved, links followed and checked), the documents attached to the chat (the existing
document search), and a calculator. No web fetch: it is the riskiest tool, and these machines cannot test it."""
from __future__ import annotations

import ast
import math
import operator
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.tools.calls import ToolResult, cut_text
from files.safe_paths import UnsafeName, inside

SERVER = "lantern"  # how the window and the figures name the server of the built-in tools
MAX_LISTED = 500
MAX_READ_BYTES = 4 << 20  # a file read whole at most (the answer is cut to RESULT_CHARS anyway)


@dataclass(frozen=True)
class BuiltinTool:
    name: str
    title: str  # in the user's words, for the window
    description: str  # for the model
    schema: dict


FILES_LIST = BuiltinTool(
    "list_files", "List files in a folder you pick",
    "List the files and folders in a folder inside the user's chosen folder ('.' for the folder itself).",
    {"type": "object", "properties": {"path": {"type": "string", "description": "a folder, relative to the "
                                                "chosen folder", "default": "."}}, "additionalProperties": False})
FILES_READ = BuiltinTool(
    "read_file", "Read files in a folder you pick",
    "Read a text file inside the user's chosen folder.",
    {"type": "object", "properties": {"path": {"type": "string", "description": "a file, relative to the chosen "
                                               "folder"}}, "required": ["path"], "additionalProperties": False})
DOCUMENTS = BuiltinTool(
    "search_documents", "Search the documents attached to the chat",
    "Search the documents attached to this chat; answers with the passages that best match the question.",
    {"type": "object", "properties": {"question": {"type": "string", "minLength": 1, "maxLength": 300}},
     "required": ["question"],
     "additionalProperties": False})
CALCULATOR = BuiltinTool(
    "calculate", "A calculator",
    "Evaluate an arithmetic expression: + - * / // % **, parentheses, and sqrt, sin, cos, tan, log, log10, exp, "
    "abs, round, min, max, pi, e.",
    {"type": "object", "properties": {"expression": {"type": "string", "minLength": 1, "maxLength": 500}},
     "required": ["expression"], "additionalProperties": False})
BUILTINS = (FILES_LIST, FILES_READ, DOCUMENTS, CALCULATOR)


def run_builtin(name: str, arguments: dict, *, folder: Path | None = None,
                search: Callable[[str], str] | None = None) -> ToolResult:
    """Run a built-in tool (its arguments already checked against its schema)."""
    t0 = time.monotonic()
    try:
        if name == CALCULATOR.name:
            text = calculate(arguments["expression"])
        elif name in (FILES_LIST.name, FILES_READ.name):
            if folder is None:
                raise ToolRefused("No folder is chosen for this tool (Tools page).")
            text = (list_folder(folder, arguments.get("path", ".")) if name == FILES_LIST.name
                    else read_file(folder, arguments["path"]))
        elif name == DOCUMENTS.name:
            if search is None:
                raise ToolRefused("This chat has no attached documents to search.")
            text = search(arguments["question"])
        else:
            raise ToolRefused(f"There is no built-in tool {name!r}.")
    except ToolRefused as e:
        return ToolResult(str(e), is_error=True, seconds=time.monotonic() - t0)
    return cut_text(text, seconds=time.monotonic() - t0)


class ToolRefused(Exception):
    """A call a built-in tool will not run; the message goes back to the model."""


# -- files in one folder -----------------------------------------------------------------------------------------

def _resolve(folder: Path, path: object) -> Path:
    """`path` inside `folder`, links resolved; ToolRefused for anything outside it (absolute, '..', a link out)."""
    if not isinstance(path, str) or "\x00" in path:
        raise ToolRefused("The path must be text.")
    if path.strip() in ("", "."):
        return Path(os.path.realpath(folder))
    if os.path.isabs(path) or path.startswith("~"):
        raise ToolRefused(f"{path!r} is not inside the chosen folder: give a path relative to it.")
    try:
        return inside(folder, folder / path, what="path")
    except UnsafeName:
        raise ToolRefused(f"{path!r} is not inside the chosen folder; only files in it can be read.") from None


def list_folder(folder: Path, path: str = ".") -> str:
    target = _resolve(folder, path)
    if not target.is_dir():
        raise ToolRefused(f"{path!r} is not a folder in the chosen folder.")
    try:
        entries = sorted(os.scandir(target), key=lambda e: e.name.lower())
    except OSError as e:
        raise ToolRefused(f"{path!r} cannot be listed: {e.strerror or e}") from None
    lines = []
    for entry in entries[:MAX_LISTED]:
        try:
            inside(folder, Path(entry.path))  # a link out of the folder is not shown as one of its files
        except UnsafeName:
            continue
        try:
            lines.append(entry.name + "/" if entry.is_dir() else f"{entry.name} ({entry.stat().st_size:,} bytes)")
        except OSError:
            continue
    if len(entries) > MAX_LISTED:
        lines.append(f"[{len(entries) - MAX_LISTED} more not listed]")
    return "\n".join(lines) or "(empty)"


def read_file(folder: Path, path: str) -> str:
    target = _resolve(folder, path)
    if not target.is_file():
        raise ToolRefused(f"{path!r} is not a file in the chosen folder.")
    try:
        with open(target, "rb") as f:
            data = f.read(MAX_READ_BYTES + 1)
    except OSError as e:
        raise ToolRefused(f"{path!r} cannot be read: {e.strerror or e}") from None
    if b"\x00" in data[:8192]:
        raise ToolRefused(f"{path!r} is a binary file ({target.stat().st_size:,} bytes); only text files are read.")
    text = data[:MAX_READ_BYTES].decode("utf-8", errors="replace")
    if len(data) > MAX_READ_BYTES:
        text += f"\n[the file is larger than {MAX_READ_BYTES >> 20} MB; the rest is not read]"
    return text


# -- the calculator ----------------------------------------------------------------------------------------------

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS = {"sqrt": math.sqrt, "sin": math.sin, "cos": math.cos, "tan": math.tan, "log": math.log,
              "log10": math.log10, "exp": math.exp, "abs": abs, "round": round, "min": min, "max": max}
_CONSTANTS = {"pi": math.pi, "e": math.e}
MAX_MAGNITUDE = 1e300


def calculate(expression: str) -> str:
    """The value of an arithmetic expression; ToolRefused for anything else (names, calls beyond the math
    functions, attributes) or for numbers too large to compute."""
    if len(expression) > 500:
        raise ToolRefused("The expression is longer than 500 characters.")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
        value = _eval(tree.body)
    except ToolRefused:
        raise
    except ZeroDivisionError:
        raise ToolRefused("Division by zero.") from None
    except (SyntaxError, ValueError, TypeError, OverflowError, RecursionError) as e:
        raise ToolRefused(f"{expression!r} cannot be computed: {e}") from None
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return str(value)


def _eval(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 1000 or (abs(left) > 1 and abs(right) * math.log10(
                abs(left)) > 300)):
            raise ToolRefused("The result would be too large to compute.")
        if isinstance(node.op, ast.Mult) and _magnitude(left) + _magnitude(right) > 300:
            raise ToolRefused("The result would be too large to compute.")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS \
            and not node.keywords and len(node.args) <= 8:
        return _FUNCTIONS[node.func.id](*(_eval(a) for a in node.args))
    raise ToolRefused("Only numbers, + - * / // % **, parentheses and the math functions listed are allowed.")


def _magnitude(x) -> float:
    x = abs(x)
    return math.log10(x) if x > 1 else 0.0
