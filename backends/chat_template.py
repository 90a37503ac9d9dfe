"""Chat templates rendered safely: a GGUF file is untrusted input (CVE-2024-34359)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.exceptions import SecurityError, TemplateError

from backends.runtime import InvalidRequestError, LanternError
from backends.template_budget import BudgetedSandbox, OverBudget, TemplateLimits

ROLES = ("system", "user", "assistant")

# For models with no template of their own (base models such as Gemma 3 270M).
PLAIN_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m.role == 'system' %}{{ m.content }}\n\n"
    "{% elif m.role == 'user' %}User: {{ m.content }}\n"
    "{% else %}Assistant: {{ m.content }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


class ChatTemplateError(LanternError):
    """The model's chat template is broken or tried something the sandbox forbids."""


@dataclass(frozen=True)
class Message:
    role: str
    content: str


def parse_messages(messages: Sequence[Mapping[str, Any] | Message]) -> list[Message]:
    """Check chat messages and normalise them (content given as a list of text parts is joined)."""
    if not messages:
        raise InvalidRequestError("The message list is empty: send at least one message.")
    parsed = []
    for i, m in enumerate(messages):
        if isinstance(m, Message):
            m = {"role": m.role, "content": m.content}
        if not isinstance(m, Mapping):
            raise InvalidRequestError(f"messages[{i}] must be an object with 'role' and 'content'.")
        role = m.get("role")
        if role not in ROLES:
            raise InvalidRequestError(f"messages[{i}].role is {role!r}; expected one of {', '.join(ROLES)}.")
        parsed.append(Message(role, _text_content(m.get("content"), i)))
    return parsed


def _text_content(content: Any, i: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not (isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise InvalidRequestError(f"messages[{i}].content: only text parts are supported.")
            texts.append(part["text"])
        return "".join(texts)
    raise InvalidRequestError(f"messages[{i}].content must be a string or a list of text parts.")


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
        env.globals.update(raise_exception=_raise_exception, strftime_now=lambda fmt: datetime.now().strftime(fmt))
        try:
            self._template = env.from_string(self.source)
        except (TemplateError, OverBudget, RecursionError, MemoryError) as e:
            raise ChatTemplateError(f"The model's chat template does not compile: {e}") from None
        self._bos, self._eos = bos_token, eos_token

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> str:
        data = [{"role": m.role, "content": m.content} for m in messages]
        try:
            return self._env.run(
                self._template, messages=data, add_generation_prompt=add_generation_prompt,
                bos_token=self._bos, eos_token=self._eos,
            )
        except OverBudget as e:
            raise ChatTemplateError(f"The model's chat template went over its budget ({e}) and was stopped.") from None
        except SecurityError as e:
            raise ChatTemplateError(f"The model's chat template tried an unsafe operation and was stopped: {e}") from None
        except _TemplateRaised as e:
            raise InvalidRequestError(f"The model's chat template refused these messages: {e}") from None
        except (TemplateError, TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError) as e:
            raise ChatTemplateError(f"The model's chat template failed: {type(e).__name__}: {e}") from None


    def render_parts(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> list[tuple[str, bool]]:
        """The rendered prompt as (text, is_message_content) parts, in order.

        Message content must be tokenized as plain text: a user who types `<|im_end|>` must not end
        their turn. The template is rendered once more with a marker in place of each content; when
        putting the contents back gives exactly the real rendering, the parts are known. A template
        that changes content (trims it, tests it) cannot be split safely: then the whole text is one part.
        """
        text = self.render(messages, add_generation_prompt=add_generation_prompt)
        marked_messages = [Message(m.role, f"\ue000{i}\ue001") for i, m in enumerate(messages)]
        try:
            marked = self.render(marked_messages, add_generation_prompt=add_generation_prompt)
        except LanternError:
            return [(text, False)]
        parts = []
        for piece in _MARK.split(marked):
            index = _MARK_INDEX.fullmatch(piece)
            if index:
                parts.append((messages[int(index.group(1))].content, True))
            elif piece:
                parts.append((piece, False))
        if "".join(p for p, _ in parts) != text:
            return [(text, False)]
        return [p for p in parts if p[0]]


_MARK = re.compile("(\ue000[0-9]+\ue001)")
_MARK_INDEX = re.compile("\ue000([0-9]+)\ue001")


class _TemplateRaised(Exception):
    pass


def _tojson(value, ensure_ascii: bool = False, indent=None, separators=None, sort_keys: bool = False) -> str:
    """transformers' tojson: JSON without HTML escaping, with json.dumps' options."""
    if separators is not None:
        separators = tuple(separators)
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class _GenerationTag(Extension):
    """{% generation %}...{% endgeneration %} marks the assistant's part for training; rendering keeps the body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def _raise_exception(message: str) -> None:
    raise _TemplateRaised(message)
