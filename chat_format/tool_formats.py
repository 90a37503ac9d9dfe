"""How each model family writes tool calls: its grammar (for llguidance) and how to read it back.

A format is recognised from the chat template (llama.cpp reads the same signs). Each grammar spells a call
exactly as the model's own template prints past calls, so the next round's prompt repeats the reply's tokens
and the KV cache is reused across an agent loop.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Mapping

from chat_format.json_scan import call_fields, skip_ws, value_end

# Arguments come out as json.dumps writes them, as templates print them back (tojson).
JSON_STYLE = {"item_separator": ", ", "key_separator": ": ", "whitespace_flexible": False}


@dataclass(frozen=True)
class Tool:
    name: str
    parameters: dict  # a JSON schema
    description: str = ""


@dataclass(frozen=True)
class PartialCall:
    name: str | None
    arguments: str  # the arguments' JSON text so far
    done: bool


def lit(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def json_rule(schema: Mapping) -> str:
    return "%json " + json.dumps({**_safe_integers(schema), "x-guidance": JSON_STYLE}, ensure_ascii=False)


SAFE_INTEGER = 2 ** 53 - 1  # beyond it JSON parsers lose digits; llama.cpp's grammars stop at 16 digits too
_LITERALS = frozenset({"const", "enum", "default", "examples"})


def _safe_integers(node):
    """The schema with integers bounded to ±(2^53 - 1) where it sets no bound: a small model left unbounded
    writes digits until max_tokens."""
    if isinstance(node, list):
        return [_safe_integers(x) for x in node]
    if not isinstance(node, Mapping):
        return node
    out = {k: (v if k in _LITERALS else _safe_integers(v)) for k, v in node.items()}
    kind = out.get("type")
    if kind == "integer" or (isinstance(kind, list) and "integer" in kind):
        if "minimum" not in out and "exclusiveMinimum" not in out:
            out["minimum"] = -SAFE_INTEGER
        if "maximum" not in out and "exclusiveMaximum" not in out:
            out["maximum"] = SAFE_INTEGER
    return out


class ToolFormat:
    """One family's call syntax. `trigger` starts a call (None: the whole reply is constrained, as in the generic
    format); `at_start`: only at the start of the reply."""

    name = ""
    native = True  # the template prints the tools itself
    trigger: str | None = None
    at_start = False
    also_starts: tuple[str, ...] = ()  # other openings of a call at the start (Llama's <|python_tag|>)
    parallel = True  # the template can print several calls in one turn

    def grammar(self, tools: list[Tool], *, parallel: bool, spell=lit) -> str:
        """A Lark grammar (llguidance's dialect) for one or more calls; `spell` writes a literal, naming the
        model's control tokens by id where the text holds one ([TOOL_CALLS], <|call|>)."""
        rules = [f"call_{i}: {self.call_rule(t, f'args_{i}', spell)}\nargs_{i}: {json_rule(t.parameters)}"
                 for i, t in enumerate(tools)]
        calls = " | ".join(f"call_{i}" for i in range(len(tools)))
        repeat = f"({spell(self.separator)} call)*" if parallel and self.parallel and self.separator else ""
        if parallel and self.parallel and not self.separator:
            repeat = "call*"
        opening = spell(self.opening) if self.opening else ""
        opening = " ".join(f"({spell(t)})?" for t in self.also_starts) + " " + opening
        closing = spell(self.closing) if self.closing else ""
        return f"start: {opening} call {repeat} {closing}\ncall: {calls}\n" + "\n".join(rules)

    opening, separator, closing = "", "", ""

    def call_rule(self, tool: Tool, args: str, spell) -> str:
        raise NotImplementedError

    def calls(self, text: str, schemas: Mapping[str, dict]) -> tuple[list[PartialCall], bool]:
        """The calls in `text` (which starts at the trigger) so far, and whether the text is a well-formed
        sequence of finished calls."""
        raise NotImplementedError


_CLOSE_CALL = "}\n</tool_call>"


class Hermes(ToolFormat):
    """`<tool_call>\\n{"name": "f", "arguments": {...}}\\n</tool_call>`: Qwen2.5, Qwen3, Hermes, SmolLM3."""

    name, trigger, separator = "hermes", "<tool_call>", "\n"

    def call_rule(self, tool, args, spell):
        head = '<tool_call>\n{"name": ' + json.dumps(tool.name) + ', "arguments": '
        return f"{spell(head)} {args} {spell(_CLOSE_CALL)}"

    def calls(self, text, schemas):
        return _tagged_objects(text, "<tool_call>", "</tool_call>", "name", "arguments")


PYTHON_TAG = "<|python_tag|>"


class Llama3(ToolFormat):
    """`{"name": "f", "parameters": {...}}` as the whole reply: Llama 3.1 to 3.3 (one call a turn)."""

    name, trigger, at_start, parallel = "llama3", "{", True, False
    also_starts = (PYTHON_TAG,)

    def call_rule(self, tool, args, spell):
        head = '{"name": ' + json.dumps(tool.name) + ', "parameters": '
        return f"{spell(head)} {args} {spell('}')}"

    def calls(self, text, schemas):
        start = len(PYTHON_TAG) if text.startswith(PYTHON_TAG) else 0  # Llama 3.1's tag before a call
        name, args, done, end = call_fields(text, start, "name", "parameters")
        ok = end is not None and done and name is not None and not text[end:].strip()
        return ([PartialCall(name, args, done)] if name is not None or args else []), ok


class MistralList(ToolFormat):
    """`[TOOL_CALLS][{"name": "f", "arguments": {...}}, ...]`: Mistral Nemo and its kin."""

    name, trigger, separator = "mistral", "[TOOL_CALLS]", ", "
    opening, closing = "[TOOL_CALLS][", "]"

    def call_rule(self, tool, args, spell):
        head = '{"name": ' + json.dumps(tool.name) + ', "arguments": '
        return f"{spell(head)} {args} {spell('}')}"

    def calls(self, text, schemas):
        i = skip_ws(text, len("[TOOL_CALLS]"))
        if not text[i:i + 1] in ("[", ""):
            return [], False
        out, rest = _call_array(text, i + 1)
        return out, rest is not None and rest.strip() == "]"


class MistralArgs(ToolFormat):
    """`[TOOL_CALLS]f[ARGS]{...}`: Mistral Small 3.2, Devstral, Ministral and Magistral."""

    name, trigger = "mistral-args", "[TOOL_CALLS]"

    def call_rule(self, tool, args, spell):
        return f'{spell("[TOOL_CALLS]" + tool.name + "[ARGS]")} {args}'

    _CALL = re.compile(r"\[TOOL_CALLS\]([^\[]*)(?:\[CALL_ID\][^\[]*)?\[ARGS\]")

    def calls(self, text, schemas):
        out, pos = [], 0
        for m in self._CALL.finditer(text):
            if m.start() != pos and text[pos:m.start()].strip():
                return out, False
            end = value_end(text, m.end())
            args = text[m.end():end] if end is not None else text[m.end():].rstrip()
            out.append(PartialCall(m.group(1).strip(), args.strip(), end is not None))
            if end is None:
                return out, False
            pos = end
        return out, bool(out) and not text[pos:].strip()


class Qwen3Coder(ToolFormat):
    """`<tool_call>\\n<function=f>\\n<parameter=p>\\nvalue\\n</parameter>\\n</function>\\n</tool_call>`:
    Qwen3-Coder, Qwen3.5, Nemotron 3. Values are raw text; the schema's types turn them into JSON."""

    name, trigger, separator = "qwen3-coder", "<tool_call>", "\n"

    def grammar(self, tools, *, parallel, spell=lit):
        rules = []
        for i, t in enumerate(tools):
            props = (t.parameters.get("properties") or {}) if isinstance(t.parameters, dict) else {}
            required = set(t.parameters.get("required") or ()) if isinstance(t.parameters, dict) else set()
            params = []
            for j, (p, schema) in enumerate(props.items()):
                head = spell(f"<parameter={p}>\n")
                value = f"value_{i}_{j}"
                if _is_string(schema):
                    rules.append(f'{value}[stop="\\n</parameter>"]: /(?s:.*)/')
                    part = f'{head} {value} "\\n"'
                else:
                    rules.append(f"{value}: {json_rule(schema if isinstance(schema, dict) else {})}")
                    part = f'{head} {value} {spell(chr(10) + "</parameter>" + chr(10))}'
                params.append(f"({part})" + ("" if p in required else "?"))
            rules.append(f'call_{i}: {spell(f"<tool_call>{chr(10)}<function={t.name}>{chr(10)}")} {" ".join(params)} '
                         f'{spell("</function>" + chr(10) + "</tool_call>")}')
        calls = " | ".join(f"call_{i}" for i in range(len(tools)))
        repeat = '("\\n" call)*' if parallel else ""
        return f"start: call {repeat}\ncall: {calls}\n" + "\n".join(rules)

    _FUNC = re.compile(r"<tool_call>\s*<function=([^>\n]*)>\n?")
    _PARAM = re.compile(r"<parameter=([^>\n]*)>\n?(.*?)\n?</parameter>\n?", re.S)

    def calls(self, text, schemas):
        out, pos = [], 0
        while True:
            m = self._FUNC.match(text, skip_ws(text, pos))
            if not m:
                return out, bool(out) and not text[pos:].strip()
            name, props = m.group(1), (schemas.get(m.group(1)) or {}).get("properties") or {}
            i, pieces = m.end(), []
            while (p := self._PARAM.match(text, i)) is not None:
                pieces.append(f"{json.dumps(p.group(1), ensure_ascii=False)}: {_value_json(p.group(2), props.get(p.group(1)))}")
                i = p.end()
            args = "{" + ", ".join(pieces)
            close = re.compile(r"\s*</function>\s*</tool_call>").match(text, i)
            out.append(PartialCall(name, args + ("}" if close else ""), close is not None))
            if not close:
                return out, False
            pos = close.end()


def _is_string(schema) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "string"


def _value_json(raw: str, schema) -> str:
    if _is_string(schema):
        return json.dumps(raw, ensure_ascii=False)
    try:
        return json.dumps(json.loads(raw), ensure_ascii=False)
    except ValueError:
        return json.dumps(raw, ensure_ascii=False)


class Generic(ToolFormat):
    """Any other model: the tools are described in the system prompt and the reply is one JSON object, either
    `{"tool_calls": [{"name": ..., "arguments": {...}}]}` or `{"response": "..."}` (llama.cpp's generic format)."""

    name, native = "generic", False

    def grammar(self, tools, *, parallel, spell=lit, required: bool = False):
        calls = [{"type": "object", "properties": {"name": {"const": t.name}, "arguments": t.parameters},
                  "required": ["name", "arguments"], "additionalProperties": False} for t in tools]
        call_list = {"type": "array", "items": {"anyOf": calls}, "minItems": 1}
        if not parallel:
            call_list["maxItems"] = 1
        options = [{"type": "object", "properties": {"tool_calls": call_list}, "required": ["tool_calls"],
                    "additionalProperties": False}]
        if not required:
            options.append({"type": "object", "properties": {"response": {"type": "string"}},
                            "required": ["response"], "additionalProperties": False})
        return f"start: {json_rule({'anyOf': options})}"

    def system_prompt(self, tools: list[Tool]) -> str:
        listing = "\n".join(json.dumps({"name": t.name, "description": t.description, "parameters": t.parameters},
                                       ensure_ascii=False) for t in tools)
        return ("You can call these tools:\n" + listing + "\n\nReply with one JSON object: "
                '{"tool_calls": [{"name": "<tool name>", "arguments": {<its arguments>}}]} to call tools, or '
                '{"response": "<your answer>"} to answer. Tool results come back inside <tool_response> tags.')

    def calls(self, text, schemas):
        i = skip_ws(text, 0)
        m = re.compile(r'\{\s*"tool_calls"\s*:\s*\[').match(text, i)
        if not m:
            return [], False
        out, rest = _call_array(text, m.end())
        return out, rest is not None and re.fullmatch(r"\]\s*\}\s*", rest) is not None

    @staticmethod
    def response(text: str) -> tuple[str, bool] | None:
        """The `response` string of `{"response": "..."}` so far (decoded), and whether it is complete."""
        m = _RESPONSE.match(text)
        if not m:
            return None
        raw = m.group(1)
        for cut in range(0, 7):  # an escape still forming (\u00) is left for later
            try:
                answer = json.loads('"' + raw[: len(raw) - cut] + '"')
                break
            except ValueError:
                continue
        else:
            return "", False
        if answer and "\ud800" <= answer[-1] <= "\udbff":
            answer = answer[:-1]  # the first half of a pair: wait for the second
        return answer, m.group(2) is not None


_RESPONSE = re.compile(r'\s*\{\s*"response"\s*:\s*"((?:[^"\\]|\\.)*)(")?')


def _call_array(text: str, i: int) -> tuple[list[PartialCall], str | None]:
    """Call objects separated by commas from text[i]; the text after the last finished one (None: unfinished)."""
    out = []
    while True:
        name, args, done, end = call_fields(text, i, "name", "arguments")
        if name is None and not args:
            return out, None
        out.append(PartialCall(name, args, done and end is not None))
        if end is None:
            return out, None
        i = skip_ws(text, end)
        if text[i:i + 1] != ",":
            return out, text[i:]
        i += 1


def _tagged_objects(text: str, open_tag: str, close_tag: str, name_key: str, args_key: str):
    out, pos = [], 0
    while True:
        i = skip_ws(text, pos)
        if i >= len(text):
            return out, bool(out)
        if not text.startswith(open_tag, i):
            return out, False
        name, args, done, end = call_fields(text, i + len(open_tag), name_key, args_key)
        if args.startswith('"') and done:  # arguments given as a JSON string
            try:
                args = json.loads(args)
            except ValueError:
                pass
        if name is None and not args:
            return out, False
        closed = end is not None and text[skip_ws(text, end):].startswith(close_tag)
        out.append(PartialCall(name, args, done and closed))
        if not closed:
            return out, False
        pos = skip_ws(text, end) + len(close_tag)
