"""The chat page's part that lets the model call tools (a mixin of ui.chat_page.ChatPage, kept apart for size): the
chat's tools (MCP servers' and Lantern's own, as the chat chooses), a reply written through the agent loop
(ui/agent_runner.py), each call's card answered by the user, and the rounds kept with the reply as they happen."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from app.tools.agent_loop import ToolBox
from app.tools.builtin import BUILTINS, DOCUMENTS
from app.tools.mcp_host import McpHost
from ui.agent_runner import AgentRunner

MAX_EXCERPTS = 6


class ToolsReplyMixin:
    """Needs the page's store, models, session, documents and the reply's parts (ui.chat_reply.ReplyMixin)."""

    tools_host: McpHost | None = None  # the window's MCP servers (None: none, the built-in tools only)
    tool_rounds_plan = None  # tests: request fields for each round (app/tools/agent_loop.AgentLoop.per_round)

    def _init_tools(self) -> None:
        self.agent = AgentRunner(self)
        self._allowed: dict[int, set[str]] = {}  # by chat: "server/tool" the user allowed for it (this session)
        self.agent.sig_text.connect(self._on_text)
        self.agent.sig_reasoning.connect(self._on_reasoning)
        self.agent.sig_round_text.connect(self._on_round_text)
        self.agent.sig_call.connect(self._on_call)
        self.agent.sig_finished.connect(self._on_agent_finished)
        self.agent.sig_failed.connect(self._on_failed)

    def toolbox(self, settings) -> ToolBox:
        """The tools this chat offers now: those of ready servers and the built-in ones turned on, narrowed by the
        chat's choice ("*": all of them)."""
        chosen = None if "*" in settings.tools else set(settings.tools)
        builtins = [b for b in BUILTINS if b.name in settings.builtin_tools
                    and (b is not DOCUMENTS or self._searched_ids())]
        folder = Path(settings.tools_folder) if settings.tools_folder else None
        return ToolBox(self.tools_host, builtins, chosen=chosen, folder=folder, search=self._search_documents)

    def _start_agent(self, request, worker, settings) -> bool:
        """Write the reply through the agent loop when the chat offers tools; False when it offers none."""
        box = self.toolbox(settings)
        tools = box.tools()
        if not tools:
            return False
        allowed = self._allowed.setdefault(self.conversation_id, set())
        self.agent.start(worker, request, box, allowed_for_chat=allowed, max_rounds=settings.tool_rounds,
                         per_round=self.tool_rounds_plan)
        return True

    def _on_round_text(self, text: str) -> None:
        """A round ended in calls: what it wrote stays above them, and the answer starts again below."""
        reply = self._reply
        if reply is None:
            return
        reply.tools.append({"text": text, "reasoning": "", "calls": []})
        reply.text = ""
        if reply.conversation == self.conversation_id and (view := self._view_of(reply.message_id)):
            if text:
                view.add_round_text(text)
            view.body.setPlainText("")
            view._text = ""

    def _on_call(self, call: dict) -> None:
        reply = self._reply
        if reply is None:
            return
        if not reply.tools:
            reply.tools.append({"text": "", "reasoning": "", "calls": []})
        calls = reply.tools[-1]["calls"]
        at = next((i for i, c in enumerate(calls) if c["id"] == call["id"]), None)
        if at is None:
            calls.append(call)
        else:
            calls[at] = call
        if reply.conversation == self.conversation_id and (view := self._view_of(reply.message_id)):
            self._wire_card(view.add_call(call))
        self.store.update(reply.message_id, content=reply.text, tools=reply.tools)  # kept as it happens
        reply.saved_at = time.monotonic()

    def _wire_card(self, card) -> None:
        if not getattr(card, "wired", False):
            card.sig_answered.connect(self.agent.answer)
            card.sig_cancel_requested.connect(self.agent.cancel)
            card.wired = True

    def _on_agent_finished(self, rounds: list, final, computed: list) -> None:
        reply = self._reply
        if reply is not None:
            reply.tools = rounds
            reply.extra_stats = {"tool_rounds": computed}  # each round's prompt tokens computed, in its figures
        if final is None:
            self._end_reply("stopped", None, None)
            return
        if self.agent.loop is not None and self.agent.loop.stop.is_set():  # the user's Stop: said as such
            final = replace(final, reason="cancelled")
        self._on_finished(final)
        if final.reason == "tool_calls":
            self.show_notice(f"Stopped after {len(rounds)} rounds of tool calls, this chat's limit (Chat settings → "
                             "Tool rounds); send a message to go on.")

    def _searched_ids(self) -> list[tuple[int, str]]:
        docs = self.documents
        if docs is None or self.conversation_id is None or not docs.index_path.exists():
            return []
        try:
            return docs.index.chat_files(self.conversation_id)
        except Exception:  # a damaged index: no documents to search (the chips say why)
            return []

    def _search_documents(self, question: str) -> str:
        """The documents tool: the chat's searched files' best parts for `question` (on the agent's thread)."""
        files = self._searched_ids()
        if not files:
            return "This chat has no attached documents to search."
        worker = self.models.worker
        embeddings = self.documents.embeddings(worker, self.models.name)
        found = self.documents.index.search([f for f, _n in files], question, embeddings)[:MAX_EXCERPTS]
        return "\n\n".join(f"[{e.file}, {e.where}]\n{e.text}" for e in found) or "Nothing in the documents matches."
