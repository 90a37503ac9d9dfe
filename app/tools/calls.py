"""A tool call checked before it runs and its result made safe to read: the arguments against the tool's JSON schema
(an invalid call goes back to the model as an error, never to the server), and the result as plain text cut to a size
the model can read, the cut said. A result is untrusted text: it is only ever shown and given to the model as the
tool's answer, never read for instructions."""
from __future__ import annotations

import json
from dataclasses import dataclass

RESULT_CHARS = 32_000  # a tool's answer given to the model at most (about 8k tokens); the rest is said to be cut
MAX_SCHEMA_BYTES = 64_000


@dataclass(frozen=True)
class ToolResult:
    text: str
    is_error: bool = False
    seconds: float = 0.0
    size: int = 0  # characters the tool answered (before any cut)
    cut: bool = False


def compile_schema(schema: object) -> str:
    """Why a tool's input schema cannot be used ("" when it can): not an object schema, too large, or not a valid
    JSON schema."""
    from jsonschema import SchemaError, validators  # deferred: loaded with the first tool listed

    if not isinstance(schema, dict):
        return "its input schema is not a JSON object"
    try:
        size = len(json.dumps(schema))
    except (TypeError, ValueError, RecursionError):
        return "its input schema cannot be written as JSON"
    if size > MAX_SCHEMA_BYTES:
        return f"its input schema is {size} bytes (at most {MAX_SCHEMA_BYTES})"
    if schema.get("type", "object") != "object":
        return "its input schema does not describe an object of arguments"
    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as e:
        return f"its input schema does not compile: {e.message[:200]}"
    except RecursionError:
        return "its input schema nests too deep"
    return ""


def check_arguments(schema: dict, arguments: object) -> str:
    """What is wrong with `arguments` for a tool of `schema` ("" when nothing is)."""
    from jsonschema import validators  # deferred: as above

    if not isinstance(arguments, dict):
        return "the arguments must be a JSON object"
    try:
        errors = sorted(validators.validator_for(schema)(schema).iter_errors(arguments), key=lambda e: list(e.path))
    except RecursionError:
        return "the arguments nest too deep"
    if not errors:
        return ""
    first = errors[0]
    where = "/".join(str(p) for p in first.path)
    return (f"{where}: " if where else "") + first.message[:300]


def result_text(result, *, seconds: float = 0.0, limit: int = RESULT_CHARS) -> ToolResult:
    """An MCP CallToolResult as the text the model reads: its text parts, other parts named (an image, a file),
    structured content as JSON where there is no text; cut at `limit` characters, the cut said."""
    parts = []
    for block in getattr(result, "content", None) or ():
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(str(block.text))
        elif kind == "image" or kind == "audio":
            parts.append(f"[{kind}: {getattr(block, 'mime_type', '') or 'unknown type'}; not shown to the model]")
        elif kind == "resource":
            inner = getattr(block, "resource", None)
            text = getattr(inner, "text", None)
            parts.append(str(text) if text is not None else f"[a file: {getattr(inner, 'uri', '')}]")
        elif kind == "resource_link":
            parts.append(f"[a link: {getattr(block, 'uri', '')}]")
    structured = getattr(result, "structured_content", None)
    if not parts and structured is not None:
        try:
            parts.append(json.dumps(structured, ensure_ascii=False))
        except (TypeError, ValueError, RecursionError):
            parts.append("[structured content that is not JSON]")
    return cut_text("\n".join(parts), is_error=bool(getattr(result, "is_error", False)), seconds=seconds,
                    limit=limit)


def cut_text(text: str, *, is_error: bool = False, seconds: float = 0.0, limit: int = RESULT_CHARS) -> ToolResult:
    size = len(text)
    if size <= limit:
        return ToolResult(text, is_error=is_error, seconds=seconds, size=size)
    note = f"\n[cut: the tool answered {size:,} characters; the first {limit:,} are shown]"
    return ToolResult(text[:limit] + note, is_error=is_error, seconds=seconds, size=size, cut=True)
