"""A reply with tools, for the window: the agent loop (app/tools/agent_loop.py) runs on a thread of its own, and
what it does comes back to the GUI thread as signals carrying plain values. A call waits for the user's answer (the
card's buttons call `answer`); Stop ends the loop, denying what waits and cancelling what runs."""
from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Signal

from app.tools.agent_loop import DENY, AgentLoop, Call, Round, ToolBox, stored_rounds
from engine.events import GenerationRequest


def call_dict(call: Call) -> dict:
    r = call.result
    return {"id": call.id, "name": call.name, "server": call.server, "tool": call.tool, "arguments": call.arguments,
            "raw": call.raw, "status": call.status, "result": r.text if r else None,
            "is_error": bool(r and r.is_error), "size": r.size if r else 0, "seconds": r.seconds if r else 0.0,
            "cut": bool(r and r.cut)}


class AgentRunner(QObject):
    sig_text = Signal(str)  # new answer text of the round being written
    sig_reasoning = Signal(str)
    sig_round_text = Signal(str)  # a round ended in calls: the text it wrote before them
    sig_call = Signal(object)  # a call (call_dict) as it changes: asked, running, done...
    # the stored rounds, the last round's Finished (None: none ended), and the tokens each round computed
    sig_finished = Signal(object, object, object)
    sig_failed = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.loop: AgentLoop | None = None
        self._thread: threading.Thread | None = None
        self._answers: dict[str, str] = {}
        self._waiting = threading.Condition()
        self._sent = (0, 0, 0)  # round, answer and reasoning characters signalled so far

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, worker, request: GenerationRequest, toolbox: ToolBox, *, allowed_for_chat: set[str],
              max_rounds: int, per_round=None) -> None:
        self.loop = AgentLoop(worker, toolbox, approve=self._approve, on_event=self._event, max_rounds=max_rounds,
                              allowed_for_chat=allowed_for_chat, per_round=per_round)
        self._answers.clear()
        self._sent = (0, 0, 0)
        loop = self.loop

        def run() -> None:
            try:
                rounds, _added = loop.run(request)
            except Exception as e:  # an engine refusal (context overflow...): the reply says it
                self.sig_failed.emit(str(e))
                return
            self.sig_finished.emit(stored_rounds(rounds), loop.last, [r.prefill_tokens for r in rounds])

        self._thread = threading.Thread(target=run, name="lantern-agent", daemon=True)
        self._thread.start()

    def answer(self, call_id: str, decision: str) -> None:
        with self._waiting:
            self._answers[call_id] = decision
            self._waiting.notify_all()

    def cancel(self, call_id: str) -> None:
        if self.loop is not None:
            self.loop.cancel(call_id)

    def stop(self) -> None:
        if self.loop is not None:
            self.loop.stop.set()
        with self._waiting:
            self._waiting.notify_all()

    def wait(self, timeout: float) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.busy

    # -- on the loop's thread -------------------------------------------------------------------------------------

    def _approve(self, call: Call) -> str:
        self.sig_call.emit(call_dict(call))
        with self._waiting:
            while call.id not in self._answers and not self.loop.stop.is_set():
                self._waiting.wait(0.2)
            return self._answers.pop(call.id, DENY)

    def _event(self, kind: str, current: Round, call: Call | None) -> None:
        index, said, thought = self._sent
        if index != current.index:
            index, said, thought = current.index, 0, 0
        if kind == "text":
            if len(current.text) > said:
                self.sig_text.emit(current.text[said:])
            if len(current.reasoning) > thought:
                self.sig_reasoning.emit(current.reasoning[thought:])
            said, thought = len(current.text), len(current.reasoning)
        elif kind == "call" and call is current.calls[0]:
            self.sig_round_text.emit(current.text)  # the text it wrote moves above its calls
            self.sig_call.emit(call_dict(call))
        elif call is not None:
            self.sig_call.emit(call_dict(call))
        self._sent = (index, said, thought)
