"""A reply's text split as it streams: reasoning, the answer, and tool calls (name first, then arguments
in pieces). Nothing is held back longer than a marker that may still be forming (`<tool_ca`)."""
from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass
from typing import Mapping

from chat_format.chat_template import ToolCall
from chat_format.harmony import Harmony
from chat_format.tool_formats import Generic, PartialCall, ToolFormat

# Tags that open and close a reasoning block, by family (the template shows which a model uses).
THINK_TAGS = (("<think>", "</think>"), ("<seed:think>", "</seed:think>"),
              ("<|START_THINKING|>", "<|END_THINKING|>"), ("[THINK]", "[/THINK]"),
              ("<|channel>thought", "<channel|>"))  # the last: Gemma 4


def think_tags(template_source: str) -> tuple[str, str] | None:
    for open_tag, close_tag in THINK_TAGS:
        if open_tag in template_source and close_tag in template_source:
            return open_tag, close_tag
    return None


def thinking_controls(template_source: str) -> tuple[bool, bool]:
    """What a chat may ask of the model (its template reads them): (thinking on or off, how hard it thinks)."""
    return "enable_thinking" in template_source, "reasoning_effort" in template_source


def starts_thinking(prompt: str, tags: tuple[str, str] | None) -> bool:
    """Whether the generation prompt leaves the model inside a reasoning block (it ends with the open tag)."""
    return tags is not None and prompt.rstrip().endswith(tags[0])


def new_call_id() -> str:
    # Nine letters and digits: the only ids Mistral's templates accept, and unique enough for one conversation.
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(9))


@dataclass(frozen=True)
class CallDelta:
    index: int
    id: str | None = None  # with the name, in a call's first delta
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class ReplyDelta:
    content: str = ""
    reasoning: str = ""
    calls: tuple[CallDelta, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.content or self.reasoning or self.calls)


@dataclass
class ToolSetup:
    format: ToolFormat
    schemas: Mapping[str, dict]  # tool name -> its parameters schema
    stream_calls: bool = True  # calls are constrained, so what streams is final


class ReplyParser:
    """Feed it the reply's text as it comes (`push`), then `finish()` for the rest and the tool calls."""

    def __init__(self, *, think: tuple[str, str] | None = None, thinking: bool = False,
                 tools: ToolSetup | None = None, harmony: bool = False):
        self._think = think
        self._in_think = thinking and think is not None
        self._trim = self._in_think
        self._held = ""  # text that may be the start of a tag
        self._tools = tools
        self._call_text: str | None = None  # from the trigger on
        self._content_seen = ""  # content so far (the at-start trigger and the generic format look at it)
        self._ids: list[str] = []
        self._sent: list[tuple[bool, int]] = []  # per call: name sent, argument characters sent
        self._generic = tools is not None and isinstance(tools.format, Generic)
        self._generic_sent = 0
        self._harmony = "" if harmony else None  # gpt-oss: the whole reply so far
        self._harmony_sent = (0, 0)
        self._final_calls = None

    # -- reasoning -------------------------------------------------------------------------------

    def push(self, text: str) -> ReplyDelta:
        if self._harmony is not None:
            return self._harmony_delta(text, final=False)
        reasoning, content = self._split_think(self._held + text)
        return self._with_calls(reasoning, content, final=False)

    def finish(self) -> tuple[ReplyDelta, list[ToolCall] | None]:
        """The rest of the text, and the calls (None when the reply made none, or made them wrong)."""
        if self._harmony is not None:
            return self._harmony_delta("", final=True), self._final_calls
        held, self._held = self._held, ""
        reasoning, content = ("", held) if not self._in_think else (held, "")
        delta = self._with_calls(reasoning, content, final=True)
        return delta, self._final_calls

    def _split_think(self, text: str) -> tuple[str, str]:
        self._held = ""
        if self._think is None:
            return "", text
        open_tag, close_tag = self._think
        reasoning, content = [], []
        while text:
            tag = close_tag if self._in_think else open_tag
            i = text.find(tag)
            if i == -1:
                keep = _partial_suffix(text, tag)
                self._emit(text[: len(text) - keep], reasoning, content)
                self._held = text[len(text) - keep:]
                break
            # an open tag counts only at the reply's start (after whitespace); elsewhere it is text
            if not self._in_think and (self._content_seen + "".join(content) + text[:i]).strip():
                self._emit(text[: i + len(tag)], reasoning, content)
                text = text[i + len(tag):]
                continue
            self._emit(text[:i], reasoning, content)
            text = text[i + len(tag):]
            self._in_think = not self._in_think
            self._trim = True  # the newlines after a tag are the template's, not the text's
        return "".join(reasoning), "".join(content)

    def _emit(self, piece: str, reasoning: list[str], content: list[str]) -> None:
        if self._trim:
            piece = piece.lstrip()
            self._trim = not piece
        (reasoning if self._in_think else content).append(piece)

    # -- tool calls ------------------------------------------------------------------------------

    def _with_calls(self, reasoning: str, content: str, *, final: bool) -> ReplyDelta:
        self._final_calls = None
        setup = self._tools
        if setup is None:
            self._content_seen += content
            return ReplyDelta(content, reasoning)
        if self._generic:
            return self._generic_delta(reasoning, content, final)
        out_content = ""
        if self._call_text is None:
            text = content
            start = self._trigger_at(text)
            if start is None:
                keep = 0 if final else _partial_suffix(text, setup.format.trigger or "")
                if setup.format.at_start and not final and _may_start(self._content_seen + text, setup.format):
                    keep = len(text)
                out_content = text[: len(text) - keep]
                self._content_seen += out_content
                self._held = text[len(text) - keep:] + self._held
                return ReplyDelta(out_content, reasoning)
            out_content = "" if setup.format.at_start else text[:start]  # at the start: only whitespace before
            self._content_seen += out_content
            self._call_text = text[start:]
        else:
            self._call_text += content
        calls, ok = setup.format.calls(self._call_text, setup.schemas)
        if not final:
            return ReplyDelta(out_content, reasoning, self._call_deltas(calls) if setup.stream_calls else ())
        text, deltas = self._settle(calls, ok)
        return ReplyDelta(out_content + text, reasoning, deltas)

    def _trigger_at(self, text: str) -> int | None:
        fmt = self._tools.format
        if fmt.at_start:
            lead = len(text) - len(text.lstrip())
            seen = self._content_seen
            if seen.strip() == "" and text.lstrip().startswith((fmt.trigger, *fmt.also_starts)):
                return lead
            return None
        i = text.find(fmt.trigger)
        return None if i == -1 else i

    def _call_deltas(self, calls: list[PartialCall]) -> tuple[CallDelta, ...]:
        out = []
        for i, c in enumerate(calls):
            if c.name is None:
                break
            if c.name not in self._tools.schemas:
                break  # an unknown function: it comes back as text at the end
            if i == len(self._sent):
                self._ids.append(new_call_id())
                self._sent.append((True, 0))
                out.append(CallDelta(i, self._ids[i], c.name, ""))
            sent = self._sent[i][1]
            if len(c.arguments) > sent:
                out.append(CallDelta(i, arguments=c.arguments[sent:]))
                self._sent[i] = (True, len(c.arguments))
        return tuple(out)

    def _settle(self, calls: list[PartialCall], ok: bool) -> tuple[str, tuple[CallDelta, ...]]:
        """At the end: the calls if well formed (and what of them has not streamed yet), else their text."""
        valid = ok and calls and all(c.done and c.name in self._tools.schemas and _is_object(c.arguments)
                                     for c in calls)
        if not valid and self._sent:  # cut short (max_tokens) after the calls began to stream: they stay calls
            calls = calls[: len(self._sent)]
        elif not valid:
            text, self._call_text = self._call_text or "", None
            self._content_seen += text
            return text, ()
        deltas = self._call_deltas(calls)
        self._final_calls = [ToolCall(self._ids[i], c.name, c.arguments) for i, c in enumerate(calls)]
        return "", deltas

    def _generic_delta(self, reasoning: str, content: str, final: bool) -> ReplyDelta:
        """The generic format: the reply is `{"response": "..."}` or `{"tool_calls": [...]}`."""
        self._call_text = (self._call_text or "") + content
        text = self._call_text
        response = Generic.response(text)
        if response is not None:
            answer, done = response
            piece = answer[self._generic_sent:]
            self._generic_sent = len(answer)
            if final and not done:
                pass  # cut short: what came is the answer
            return ReplyDelta(piece, reasoning)
        calls, ok = self._tools.format.calls(text, self._tools.schemas)
        if not final:
            return ReplyDelta("", reasoning, self._call_deltas(calls) if self._tools.stream_calls else ())
        out, deltas = self._settle(calls, ok)
        return ReplyDelta(out, reasoning, deltas)

    def _harmony_delta(self, text: str, final: bool) -> ReplyDelta:
        self._harmony += text
        reasoning, content, calls, _ = Harmony.split(self._harmony)
        sent_r, sent_c = self._harmony_sent
        self._harmony_sent = (len(reasoning), len(content))
        deltas: tuple[CallDelta, ...] = ()
        if self._tools is not None and calls and self._tools.stream_calls and not final:
            deltas = self._call_deltas(calls)
        if final and calls:
            if self._tools is not None:
                text, deltas = self._settle(calls, all(c.done for c in calls))
                content += text and "".join(c.arguments for c in calls)
            else:
                content += "".join(c.arguments for c in calls)  # a call with no tools offered: its text
        return ReplyDelta(content[sent_c:], reasoning[sent_r:], deltas)


def _may_start(text: str, fmt: ToolFormat) -> bool:
    """Whether a reply that is `text` so far may still turn out to begin with a call (only whitespace, or the
    start of a marker a call opens with)."""
    head = text.lstrip()
    return any(t.startswith(head) for t in (fmt.trigger, *fmt.also_starts))


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of `text` that is a proper start of `tag`."""
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0


def _is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False
