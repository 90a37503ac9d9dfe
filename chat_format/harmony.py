"""gpt-oss's harmony format: channels for thinking (analysis), answers (final) and tool calls (commentary
addressed `to=functions.NAME`)."""
from __future__ import annotations

import re

from chat_format.tool_formats import PartialCall, Tool, ToolFormat, json_rule, lit

_ENDS = ("<|end|>", "<|return|>", "<|call|>")
_HEADER = re.compile(r"(?:<\|start\|>assistant)?(?P<head>(?:[^<]|<\|channel\|>|<\|constrain\|>)*)<\|message\|>")
_TO = re.compile(r"to=functions\.([^\s<]+)")


class Harmony(ToolFormat):
    name, trigger, separator = "harmony", "to=functions.", ""

    def grammar(self, tools: list[Tool], *, parallel: bool, spell=lit) -> str:
        # From the trigger: the name, the header's rest as gpt-oss writes it, the JSON arguments, <|call|>.
        rules = [f"call_{i}: {spell(t.name)} head {spell('<|message|>')} args_{i} {spell('<|call|>')}\n"
                 f"args_{i}: {json_rule(t.parameters)}" for i, t in enumerate(tools)]
        head = " | ".join(spell(h) for h in (" <|constrain|>json", "<|channel|>commentary json",
                                             "<|channel|>commentary <|constrain|>json"))
        calls = " | ".join(f"call_{i}" for i in range(len(tools)))
        return f"start: {spell(self.trigger)} call\ncall: {calls}\nhead: {head}\n" + "\n".join(rules)

    def required_grammar(self, tools: list[Tool], *, spell=lit) -> str:
        """A call from the reply's start (the prompt ends `<|start|>assistant`); the analysis is skipped."""
        calls = self.grammar(tools, parallel=False, spell=spell).replace("start:", "calls:", 1)
        return f'start: {spell("<|channel|>commentary ")} calls\n{calls}'

    def calls(self, text, schemas):
        return [], False  # read by split() below: calls sit among channels

    @staticmethod
    def split(text: str) -> tuple[str, str, list[PartialCall], bool]:
        """(reasoning, content, calls, finished) of a reply so far. Text not in any channel is content."""
        reasoning, content, calls = [], [], []
        pos = 0
        while pos < len(text):
            m = _HEADER.match(text, pos)
            if not m:
                if not _could_be_header(text[pos:]):
                    content.append(text[pos:])
                    pos = len(text)
                break
            head = m.group("head")
            body_start = m.end()
            end, end_tag = _next_end(text, body_start)
            body = text[body_start:end]
            to = _TO.search(head)
            if to:
                calls.append(PartialCall(to.group(1), body.strip(), end_tag == "<|call|>"))
            elif "analysis" in head:
                reasoning.append(body)
            else:
                content.append(body)
            if end_tag is None:
                return "".join(reasoning), "".join(content), calls, False
            pos = end + len(end_tag)
        return "".join(reasoning), "".join(content), calls, True


def _next_end(text: str, start: int) -> tuple[int, str | None]:
    best, tag = len(text), None
    for t in _ENDS:
        i = text.find(t, start)
        if i != -1 and i < best:
            best, tag = i, t
    if tag is None:  # hold back a partial end tag
        for t in _ENDS:
            for k in range(len(t) - 1, 0, -1):
                if text.endswith(t[:k]):
                    return min(best, len(text) - k), None
    return best, tag


def _could_be_header(rest: str) -> bool:
    """Whether `rest` may still become a channel header (so it is not shown as text yet)."""
    if "<|message|>" in rest:
        return False
    return any(rest.startswith(h) or h.startswith(rest) for h in ("<|start|>", "<|channel|>", " to=", "to="))


HARMONY = Harmony()
