"""The chat page's part that writes a reply: the request made from the chat and its settings, the reply streamed
into its message (saved as it grows, so a crash loses at most SAVE_EVERY_S of it), and how it ends (a mixin of
ui.chat_page.ChatPage, kept apart for size)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from app.conversations import LATEST, StoredMessage
from app.tools.agent_loop import replayed
from basics.errors import LanternError
from engine.events import Finished, GenerationRequest

STILL_WRITING = "A reply is still being written: stop it first."
SAVE_EVERY_S = 0.5  # a streaming reply is saved this often, so a crash loses at most this much of it
STATUS_BY_REASON = {"stop": "done", "length": "done", "cancelled": "stopped", "error": "error",
                    "tool_calls": "done"}  # the agent loop's round limit: its rounds are the reply


@dataclass
class Reply:
    conversation: int
    message_id: int
    text: str = ""
    saved_at: float = 0.0
    reasoning: str = ""
    model: str = ""
    before: StoredMessage | None = None  # a continued reply as it was: put back if the continuation fails
    tools: list = field(default_factory=list)  # its tool rounds so far (app/tools/agent_loop.stored_rounds)
    extra_stats: dict = field(default_factory=dict)  # figures of its own (the agent loop's rounds)


class ReplyMixin:
    """Needs the page's store, models, session, sidebar, reading, notice and views (ui.chat_page.ChatPage)."""

    def _history(self, upto: int | None = None) -> list[dict]:
        history = self._system_only(self.effective_settings())
        path = self.store.path_to(upto) if upto is not None else self.store.messages(self.conversation_id)
        for m in path:
            if m.role == "assistant" and m.tools and m.status != "error":
                history += replayed(m.tools)  # the calls and results before its answer, as the model saw them
            if m.status != "error" and m.content:
                message = {"role": m.role, "content": self._content(m.role, m.content)}
                if m.reasoning:  # for templates that keep it; the others drop it
                    message["reasoning_content"] = m.reasoning
                history.append(message)
        return history

    def _start_reply(self, *, after: int | None = None, continuing: StoredMessage | None = None) -> None:
        """A reply at the end of the branch on screen, or after message `after` (a regenerate: a new branch), or
        more of the reply `continuing` (cut at the length limit), written on to its end."""
        settings = self.effective_settings()
        try:
            worker = self.models.worker or self.models.load(settings.model)
        except LanternError as e:  # refused before it started (no such model, no server address): said, kept
            if self.views() and self.views()[-1].role == "user":
                self._unanswered_why[self.views()[-1].message_id] = f"No reply: {e}"
            else:
                self.show_notice(f"No reply: {e}")
            self._update_actions()
            self.sig_reply_done.emit("error")
            return
        options = {"stop": tuple(settings.stop), "template_options": settings.template_options(),
                   "continue_reply": continuing is not None, **self.request_options}
        request = GenerationRequest(messages=self._history(after), sampling=settings.sampling(),
                                    max_tokens=settings.max_tokens,
                                    drop_oldest_turns=settings.overflow == "drop_oldest",
                                    prompt_lookup=settings.prompt_lookup, priority=1,  # before the endpoint's
                                    **options)
        model = self.models.name or settings.model
        if continuing is not None:  # the same message grows; its figures are the continuation's
            self.store.update(continuing.id, content=continuing.content, status="streaming")
            self._reply = Reply(self.conversation_id, continuing.id, continuing.content, time.monotonic(),
                                 continuing.reasoning, model, before=continuing)
            if (view := self._view_of(continuing.id)) is not None:
                view.finish("streaming")
        else:
            reply = self.store.add(self.conversation_id, "assistant", "", status="streaming",
                                   parent=LATEST if after is None else after)
            self._reply = Reply(self.conversation_id, reply.id, saved_at=time.monotonic(), model=model)
            if after is None:
                self._add_view("assistant", "", reply.id, "streaming").set_model(model)
            else:
                self._rebuild()
        self.show_notice("" if self.models.state == "ready" else "Loading the model…")
        self.session.worker = worker
        if continuing is not None or not self._start_agent(request, worker, settings):
            self.session.send(request)
        self.sidebar.set_generating(self.conversation_id)
        self._update_actions()

    def _on_prompt_read(self, done: int, total: int) -> None:
        if self._reply is None or self._reply.conversation != self.conversation_id:
            return
        self.reading.setRange(0, total)
        self.reading.setValue(done)
        self.reading.setVisible(done < total)

    def _on_text(self, text: str) -> None:
        self.reading.hide()
        reply = self._reply
        if reply is None:
            return
        if not reply.text and self.notice.text() == "Loading the model…":
            self.show_notice("")
        reply.text += text
        if reply.conversation == self.conversation_id and (view := self._view_of(reply.message_id)):
            view.append(text)  # while following, the growing range keeps the end in sight
        if time.monotonic() - reply.saved_at >= SAVE_EVERY_S:
            self.store.update(reply.message_id, content=reply.text, reasoning=reply.reasoning or None)
            reply.saved_at = time.monotonic()

    def _on_reasoning(self, text: str) -> None:
        reply = self._reply
        if reply is None:
            return
        reply.reasoning += text
        if reply.conversation == self.conversation_id and (view := self._view_of(reply.message_id)):
            view.append_reasoning(text)
        if time.monotonic() - reply.saved_at >= SAVE_EVERY_S:
            self.store.update(reply.message_id, content=reply.text, reasoning=reply.reasoning)
            reply.saved_at = time.monotonic()

    def _on_finished(self, finished: Finished) -> None:
        status = STATUS_BY_REASON[finished.reason]
        stats = {**asdict(finished.stats), "model": self._reply.model if self._reply else "",  # who wrote it
                 "finish": finished.reason,  # "length": the reply says it was cut at the limit
                 **(self._reply.extra_stats if self._reply else {})}
        self._end_reply(status, stats, finished.error)
        if finished.stats.dropped_messages:
            self.show_notice(f"The {finished.stats.dropped_messages} oldest messages did not fit the context "
                             "window and were left out of this reply.")

    def _on_failed(self, message: str) -> None:
        if self.models.state == "failed" and self.models.error not in message:
            message = f"{message} {self.models.error}"
        reply = self._reply
        shown = reply is not None and reply.conversation == self.conversation_id and self._view_of(reply.message_id)
        if reply is not None and reply.before is not None and reply.text == reply.before.content:
            self._end_reply("error", None, message, refused=message)  # the reply stays as it was
            return
        self._end_reply("error", None, message)
        # once: in the reply where it happened when that is on screen, else above the input
        self.show_notice("" if shown else message)

    def _on_dropped(self) -> None:
        """Stopped before the model began it: kept as stopped (a continuation is put back: _end_reply)."""
        self._end_reply("stopped", None, None)

    def _end_reply(self, status: str, stats: dict | None, error: str | None, *, refused: str = "") -> None:
        """`refused`: why a continuation wrote nothing (the reply is put back as it was, and that is said)."""
        reply, self._reply = self._reply, None
        self.reading.hide()
        self.sidebar.set_generating(None)
        if reply is None:
            return
        if self.notice.text() == STILL_WRITING:
            self.show_notice("")
        if reply.before is not None and reply.text == reply.before.content and status in ("stopped", "error"):
            # a continuation that wrote nothing: the reply stays as it was (its Continue too), and that is said
            status, stats, error = reply.before.status, reply.before.stats, None
            self.show_notice(f"Not continued: {refused or 'stopped before it began'}")
        self.store.update(reply.message_id, content=reply.text, status=status, stats=stats,
                          reasoning=reply.reasoning or None, tools=reply.tools or None)
        if reply.conversation == self.conversation_id and (view := self._view_of(reply.message_id)):
            view.finish(status, stats, error)  # its figures stay in sight while following
        self._update_actions()
        self.count_context()  # the reply takes its room too
        self.sig_reply_done.emit(status)

    def stop(self) -> None:
        self.session.stop()
        self.agent.stop()

    def shutdown(self) -> None:
        """At exit: a reply still being written is kept as stopped, with the text so far and its figures (the
        engine stops within a step; a few seconds at most are waited for)."""
        self.session.stop()
        self.agent.stop()
        self.session.wait(5.0)
        self.agent.wait(5.0)
        if self._reply is not None:  # the engine did not answer in time: the text, without figures
            self._end_reply("stopped", None, None)
