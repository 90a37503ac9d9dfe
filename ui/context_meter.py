"""Beside the message box: how much of the context the chat takes, with what is being typed, and what happens at
the limit. Counted by the engine itself (its template and tokenizer, on its own thread), so the figure is the one the
reply's figures will give."""
from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel

from basics.errors import ContextOverflowError
from engine.events import GenerationRequest
from ui.tasks import run_task

DELAY_MS = 300  # counted when the typing pauses
NEAR = 0.9  # "near the limit" from this share of the context


def count_tokens(engine, request: GenerationRequest) -> tuple[int, int]:
    """The prompt's tokens and the context's size (on the engine thread); a prompt over the context is counted too."""
    try:
        return engine.count_prompt_tokens(request), engine.runtime.n_ctx
    except ContextOverflowError as e:
        return e.prompt_tokens, e.n_ctx


class ContextMeter(QLabel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("context-meter")
        self.setAccessibleName("Context used")
        self._delay = QTimer(self, singleShot=True, interval=DELAY_MS)
        self._delay.timeout.connect(self._count)
        self._asked = 0  # results of older questions are dropped
        self._pending = None
        self.counted: tuple[int, int] | None = None  # the last figure shown: tokens, of the context's
        self.hide()

    def request_count(self, worker, request: GenerationRequest | None, *, dropping: bool) -> None:
        """Count `request` soon (None, or no model: nothing to show, at once)."""
        self._pending = (worker, request, dropping)
        if worker is None or request is None:
            self._delay.stop()
            self._count()
            return
        self._delay.start()

    def _count(self) -> None:
        worker, request, dropping = self._pending
        self._asked += 1
        asked = self._asked
        if worker is None or request is None:
            self.counted = None
            self.hide()
            return
        run_task(lambda: worker.call(lambda e: count_tokens(e, request)).result(timeout=120),
                 lambda figure: asked == self._asked and self._show(*figure, dropping),
                 lambda _e: asked == self._asked and self.hide())  # no model to count with: no figure

    def _show(self, tokens: int, n_ctx: int, dropping: bool) -> None:
        self.counted = (tokens, n_ctx)
        text = f"{tokens:,} of {n_ctx:,} tokens"
        then = "the oldest turns will be left out" if dropping else "the message will be refused"
        if tokens >= n_ctx:
            text += f" · over the limit: {then}"
        elif tokens >= NEAR * n_ctx:
            text += f" · near the limit; past it {then}"
        self.setText(text)
        self.setToolTip("The chat, its system prompt and what you typed, as the model reads them, against its "
                        "context size. What happens at the limit is this chat's choice (Chat settings).")
        self.show()
