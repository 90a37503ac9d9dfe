"""From a chat request to what the engine needs: the messages and tools as the template takes them, the grammar
that holds the reply (tool calls, JSON), and the parser that splits the reply (reasoning, answer, calls)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from chat_format.chat_template import Message
from chat_format.reply import ReplyParser, ToolSetup, starts_thinking
from chat_format.tool_formats import Generic, Tool, ToolFormat, json_rule
from engine.constraint import Constraint, GrammarTokenizer


@dataclass(frozen=True)
class ModelStyle:
    """How a model writes: its tool-call format, its reasoning tags, whether it speaks harmony (gpt-oss)."""

    tool_format: ToolFormat
    think: tuple[str, str] | None
    harmony: bool


@dataclass
class ReplyPlan:
    messages: list[Message]
    tools: list[dict] | None  # for the template
    options: dict
    setup: ToolSetup | None
    json_schema: dict | None
    required: bool  # a call must be made (tool_choice "required" or a named function)
    parallel: bool
    style: ModelStyle
    constraint: Constraint | None = None
    parser: ReplyParser | None = field(default=None)

    def finish(self, prompt: str, tokenizer: GrammarTokenizer | None) -> None:
        """Build the grammar and the parser, now that the prompt's text (its last tag) is known."""
        thinking = starts_thinking(prompt, self.style.think)
        self.parser = ReplyParser(think=self.style.think, thinking=thinking, tools=self.setup,
                                  harmony=self.style.harmony)
        if tokenizer is None:
            return
        if self.setup is not None:
            self.constraint = _tool_constraint(self, tokenizer, thinking)
        elif self.json_schema is not None:
            self.constraint = _json_constraint(self, tokenizer, thinking)


def plan_reply(request, messages: list[Message], style: ModelStyle) -> ReplyPlan:
    tools = list(request.tools or ())
    choice = request.tool_choice or "auto"
    if request.tool_name is not None:
        tools = [t for t in tools if t.name == request.tool_name]
    options = dict(request.template_options or {})
    use_tools = bool(tools) and choice != "none"
    fmt = style.tool_format
    template_tools = None
    if tools:  # shown even with tool_choice "none": the prompt stays the same across an agent's rounds
        if fmt.native:
            template_tools = [_openai_tool(t) for t in request.tools]  # every tool is shown, even if one is forced
        else:  # every tool too: a round that forces one keeps the prompt of the rounds that do not
            messages = _with_tool_prompt(messages, fmt.system_prompt(list(request.tools)))
    setup = ToolSetup(fmt, {t.name: t.parameters for t in tools}) if use_tools else None
    return ReplyPlan(messages, template_tools, options, setup, request.json_schema,
                     required=use_tools and (choice == "required" or request.tool_name is not None),
                     parallel=request.parallel_tool_calls and request.tool_name is None, style=style)


def _openai_tool(t: Tool) -> dict:
    return {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}


def _with_tool_prompt(messages: list[Message], text: str) -> list[Message]:
    if messages and messages[0].role == "system":
        first = messages[0]
        return [Message("system", f"{first.content}\n\n{text}" if first.content else text), *messages[1:]]
    return [Message("system", text), *messages]


def _reasoning_prefix(plan: ReplyPlan, tok: GrammarTokenizer, thinking: bool) -> tuple[str, str]:
    """Grammar rules letting a thinking model reason before what is constrained."""
    if plan.style.think is None:
        return "", ""
    open_tag, close_tag = plan.style.think
    rule = f"reason[stop={json.dumps(close_tag)}]: /(?s:.*)/\nws: /[ \\t\\n]*/\n"
    if thinking:
        return "reason ws", rule
    return f"({tok.spell(open_tag)} reason ws)?", rule


def _tool_constraint(plan: ReplyPlan, tok: GrammarTokenizer, thinking: bool) -> Constraint:
    fmt, tools = plan.setup.format, [Tool(n, s) for n, s in plan.setup.schemas.items()]
    if isinstance(fmt, Generic):
        grammar = fmt.grammar(tools, parallel=plan.parallel, spell=tok.spell, required=plan.required)
        return _from_start(grammar, plan, tok, thinking)
    if plan.required and plan.style.harmony:
        return Constraint(tok, fmt.required_grammar(tools, spell=tok.spell))
    grammar = fmt.grammar(tools, parallel=plan.parallel, spell=tok.spell)
    if plan.required:
        return _from_start(grammar, plan, tok, thinking)
    return Constraint(tok, grammar, trigger=fmt.trigger, at_start=fmt.at_start, also_starts=fmt.also_starts)


def _from_start(grammar: str, plan: ReplyPlan, tok: GrammarTokenizer, thinking: bool) -> Constraint:
    prefix, rules = _reasoning_prefix(plan, tok, thinking)
    if prefix:
        grammar = grammar.replace("start:", "calls:", 1)
        grammar = f"start: {prefix} calls\n{rules}{grammar}"
    return Constraint(tok, grammar)


def _json_constraint(plan: ReplyPlan, tok: GrammarTokenizer, thinking: bool) -> Constraint:
    body = f"start: {json_rule(plan.json_schema)}"
    if plan.style.harmony:  # the answer's channel holds the JSON
        opening = "<|channel|>final<|message|>"
        return Constraint(tok, f"start: {tok.spell(opening)} answer\nanswer: {json_rule(plan.json_schema)}",
                          trigger=opening)
    return _from_start(body, plan, tok, thinking)


def parse_tools(tools: Sequence[Mapping]) -> list[Tool]:
    """OpenAI tool definitions as Tools (the API has checked their shape)."""
    out = []
    for t in tools:
        f = t["function"]
        out.append(Tool(f["name"], dict(f.get("parameters") or {"type": "object", "properties": {}}),
                        f.get("description") or ""))
    return out
