"""Chat templates rendered safely: a GGUF file is untrusted input (CVE-2024-34359).

Messages go to a template as transformers passes them (tool calls with their arguments as a mapping that prints
as its JSON, tool results, past reasoning, typed content parts where the template iterates parts). What a
template cannot take is rewritten first (chat_format/template_caps.py), as llama.cpp's minja polyfills do.
"""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.ext import Extension

from basics.errors import InvalidRequestError, LanternError
from chat_format.template_budget import BudgetedSandbox, OverBudget, TemplateLimits
from chat_format.template_caps import adapt, probe, tools_for
from runtimes.vision import MAX_IMAGE_BYTES, marker_for

ROLES = ("system", "user", "assistant", "tool")

# For models with no template of their own (base models such as Gemma 3 270M).
PLAIN_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m.role == 'system' %}{{ m.content }}\n\n"
    "{% elif m.role == 'user' %}User: {{ m.content }}\n"
    "{% elif m.role == 'tool' %}Tool result: {{ m.content }}\n"
    "{% else %}Assistant: {{ m.content }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
# What the plain format starts a turn with after a reply: a base model that writes one has finished its reply.
PLAIN_TURN_MARKERS = ("\nUser:", "\nTool result:", "\nAssistant:")
# Names a template reads that a client may not set through chat_template_kwargs.
RESERVED = frozenset({"messages", "tools", "add_generation_prompt", "bos_token", "eos_token", "raise_exception",
                      "strftime_now", "range", "lipsum", "namespace", "dict", "cycler", "joiner"})


class ChatTemplateError(LanternError):
    """The model's chat template is broken or tried something the sandbox forbids."""


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON object's text, as the model wrote it


@dataclass(frozen=True)
class Message:
    role: str
    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None  # a tool message: the call it answers
    name: str | None = None  # a tool message: the function's name
    reasoning: str | None = None  # an assistant's thinking, for templates that keep it
    # Images in the message (their bytes): each stands in `content` as its marker (runtimes/vision.py).
    images: tuple[bytes, ...] = ()


def parse_messages(messages: Sequence[Mapping[str, Any] | Message]) -> list[Message]:
    """Check chat messages and normalise them (content given as a list of text parts is joined)."""
    if not messages:
        raise InvalidRequestError("The message list is empty: send at least one message.")
    parsed = []
    for i, m in enumerate(messages):
        if isinstance(m, Message):
            parsed.append(m)
            continue
        if not isinstance(m, Mapping):
            raise InvalidRequestError(f"messages[{i}] must be an object with 'role' and 'content'.")
        role = m.get("role")
        if role not in ROLES:
            raise InvalidRequestError(f"messages[{i}].role is {role!r}; expected one of {', '.join(ROLES)}.")
        calls = tuple(_tool_call(c, f"messages[{i}].tool_calls[{j}]") for j, c in enumerate(m.get("tool_calls") or ()))
        content = m.get("content")
        if content is None and not (role == "assistant" and calls):
            raise InvalidRequestError(f"messages[{i}].content is missing.")
        reasoning = m.get("reasoning_content")
        if reasoning is not None and not isinstance(reasoning, str):
            raise InvalidRequestError(f"messages[{i}].reasoning_content must be a string.")
        images: list[bytes] = []
        text = None if content is None else _text_content(content, i, images)
        if images and role != "user":
            raise InvalidRequestError(f"messages[{i}]: only user messages may carry images.")
        parsed.append(Message(role, text, calls, m.get("tool_call_id"), m.get("name"), reasoning, tuple(images)))
    return parsed


def _tool_call(call: Any, where: str) -> ToolCall:
    if isinstance(call, ToolCall):
        return call
    f = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(f, Mapping) or not isinstance(f.get("name"), str) or not isinstance(f.get("arguments"), str):
        raise InvalidRequestError(f"{where} must have function.name and function.arguments (a JSON string).")
    try:
        args = json.loads(f["arguments"])
    except ValueError:
        raise InvalidRequestError(f"{where}.function.arguments is not valid JSON.") from None
    if not isinstance(args, dict):
        raise InvalidRequestError(f"{where}.function.arguments must be a JSON object.")
    return ToolCall(str(call.get("id") or ""), f["name"], f["arguments"])


def _text_content(content: Any, i: int, images: list[bytes]) -> str:
    """The content's text; image parts go to `images` and stand in the text as their markers."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, Mapping) and part.get("type") == "image_url":
                data = _image_data(part.get("image_url"), f"messages[{i}].content[{j}]")
                images.append(data)
                texts.append(marker_for(data))
            else:
                raise InvalidRequestError(f"messages[{i}].content[{j}]: only text and image_url parts are supported.")
        return "".join(texts)
    raise InvalidRequestError(f"messages[{i}].content must be a string or a list of text and image parts.")


def _image_data(image_url: Any, where: str) -> bytes:
    """An image_url part's bytes: a data: URL (base64); Lantern never fetches a URL from a request."""
    url = image_url.get("url") if isinstance(image_url, Mapping) else image_url
    if not isinstance(url, str):
        raise InvalidRequestError(f"{where}.image_url.url must be a string (a data: URL).")
    if not url.startswith("data:"):
        raise InvalidRequestError(f"{where}: Lantern does not fetch images from URLs; send the image itself as a "
                                  "data: URL (data:image/png;base64,...).")
    head, sep, body = url.partition(",")
    if not sep or not head.endswith(";base64"):
        raise InvalidRequestError(f"{where}: the data: URL must be base64 (data:image/png;base64,...).")
    if len(body) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise InvalidRequestError(f"{where}: the image is over {MAX_IMAGE_BYTES // 1_000_000} MB.")
    try:
        data = base64.b64decode(body, validate=True)
    except ValueError:
        raise InvalidRequestError(f"{where}: the data: URL is not valid base64.") from None
    if not data:
        raise InvalidRequestError(f"{where}: the image is empty.")
    return data


class ChatTemplate:
    """A model's Jinja chat template, compiled once in an immutable sandbox."""

    def __init__(self, source: str | None, *, bos_token: str = "", eos_token: str = "",
                 limits: TemplateLimits = TemplateLimits()):
        self.is_fallback = not source
        self.source = source or PLAIN_TEMPLATE
        # As transformers renders templates: loop controls ({% break %}), the {% generation %} tag, tojson's options.
        env = BudgetedSandbox(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.Undefined, limits=limits,
                              extensions=["jinja2.ext.loopcontrols", _GenerationTag])
        self._env = env
        env.filters["tojson"] = env.budgeted(_tojson)
        env.globals.update(raise_exception=_raise_exception)  # strftime_now: per render, at its request's time
        try:
            self._template = env.from_string(self.source)
        except (TemplateError, OverBudget, RecursionError, MemoryError) as e:
            raise ChatTemplateError(f"The model's chat template does not compile: {e}") from None
        self._bos, self._eos = bos_token, eos_token
        with env.one_budget():  # the probes share one time budget: a template that loops costs one, not each
            self.caps = probe(self)  # what this template takes, learnt by rendering probes

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = True,
               tools: Sequence[Mapping] | None = None, options: Mapping[str, Any] | None = None,
               now: datetime | None = None) -> str:
        """The prompt text. `tools` are OpenAI tool definitions; `options` extra template variables; `now` the time
        the template may print (strftime_now, firefunction's datetime): one per request, so its renders agree."""
        return self.render_raw(adapt(messages, self.caps), add_generation_prompt=add_generation_prompt,
                               tools=tools_for(tools, self.caps), options=options, now=now)

    def render_raw(self, data: list[dict], *, add_generation_prompt: bool = True, tools=None, options=None,
                   now: datetime | None = None) -> str:
        """Render template-ready message dicts as they are (capability probes use this)."""
        now = now or datetime.now()
        extra = {k: v for k, v in (options or {}).items() if k not in RESERVED}
        extra.setdefault("enable_thinking", True)  # as llama.cpp's server: thinking models think unless told not to
        # firefunction's names for the tools and the date
        extra.setdefault("functions", _tojson(list(tools), indent=2) if tools else "")
        extra.setdefault("datetime", now.strftime("%b %d %Y %H:%M:%S GMT"))
        extra["strftime_now"] = now.strftime
        try:
            return self._env.run(
                self._template, **extra, messages=data, add_generation_prompt=add_generation_prompt,
                bos_token=self._bos, eos_token=self._eos, tools=None if tools is None else list(tools),
            )
        except OverBudget as e:
            raise ChatTemplateError(f"The model's chat template went over its budget ({e}) and was stopped.") from None
        except SecurityError as e:
            raise ChatTemplateError(f"The model's chat template tried an unsafe operation and was stopped: {e}") from None
        except _TemplateRaised as e:
            raise InvalidRequestError(f"The model's chat template refused these messages: {e}") from None
        except (TemplateError, TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError) as e:
            raise ChatTemplateError(f"The model's chat template failed: {type(e).__name__}: {e}") from None

    def render_parts(self, messages: Sequence[Message], *, add_generation_prompt: bool = True,
                     tools: Sequence[Mapping] | None = None,
                     options: Mapping[str, Any] | None = None) -> list[tuple[str, bool]]:
        """The rendered prompt as (text, is_message_content) parts, in order.

        Message content must be tokenized as plain text: a user who types `<|im_end|>` must not end
        their turn. The template is rendered once more with a marker in place of each text (content,
        reasoning); when putting the texts back gives exactly the real rendering, the parts are known. A template
        that changes text (trims it, tests it) cannot be split safely: then the whole text is one part.
        """
        # one time for both renders: a template that prints it (strftime_now) would otherwise differ between them
        kw = dict(add_generation_prompt=add_generation_prompt, tools=tools, options=options, now=datetime.now())
        with self._env.one_budget():  # both renders of the request within one time budget
            return self._parts(messages, kw)

    def _parts(self, messages: Sequence[Message], kw: dict) -> list[tuple[str, bool]]:
        text = self.render(messages, **kw)
        texts: list[str] = []

        def mark(s: str | None) -> str | None:
            if not s:
                return s
            texts.append(s)
            return f"\ue000{len(texts) - 1}\ue001"

        marked_messages = [Message(m.role, mark(m.content), m.tool_calls, m.tool_call_id, m.name, mark(m.reasoning))
                           for m in messages]
        try:
            marked = self.render(marked_messages, **kw)
        except LanternError:
            return [(text, False)]
        parts = []
        for piece in _MARK.split(marked):
            index = _MARK_INDEX.fullmatch(piece)
            if index:
                parts.append((texts[int(index.group(1))], True))
            elif piece:
                parts.append((piece, False))
        if "".join(p for p, _ in parts) != text:
            return [(text, False)]
        return [p for p in _mark_arguments(parts, messages) if p[0]]


def _mark_arguments(parts: list[tuple[str, bool]], messages: Sequence[Message]) -> list[tuple[str, bool]]:
    """Tool-call arguments are text too (a model may write `<|im_end|>` inside a file it edits): where the template
    printed them as given or as tojson writes them, they become content parts."""
    needles = set()
    for m in messages:
        for c in m.tool_calls:
            needles.add(c.arguments)
            needles.add(json.dumps(json.loads(c.arguments), ensure_ascii=False))
    needles.discard("")
    if not needles:
        return parts
    pattern = re.compile("|".join(re.escape(n) for n in sorted(needles, key=len, reverse=True)))
    out = []
    for text, is_content in parts:
        if is_content:
            out.append((text, True))
            continue
        pos = 0
        for m in pattern.finditer(text):
            out += [(text[pos:m.start()], False), (m.group(), True)]
            pos = m.end()
        out.append((text[pos:], False))
    return out


_MARK = re.compile("(\ue000[0-9]+\ue001)")
_MARK_INDEX = re.compile("\ue000([0-9]+)\ue001")


class _TemplateRaised(Exception):
    pass


def _tojson(value, ensure_ascii: bool = False, indent=None, separators=None, sort_keys: bool = False) -> str:
    """transformers' tojson: JSON without HTML escaping, with json.dumps' options."""
    if separators is not None:
        separators = tuple(separators)
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys,
                      default=_json_default)


def _json_default(value):
    if isinstance(value, jinja2.Undefined):
        return None
    if hasattr(value, "__iter__") and not isinstance(value, (str, bytes)):  # map()/select() give generators
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class _GenerationTag(Extension):
    """{% generation %}...{% endgeneration %} marks the assistant's part for training; rendering keeps the body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def _raise_exception(message: str) -> None:
    raise _TemplateRaised(message)
