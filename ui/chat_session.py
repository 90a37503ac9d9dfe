"""Replies for the window: requests go to the engine thread, text comes back batched on a timer.

The engine thread only appends events to a buffer (no Qt call from it); a QTimer on the GUI thread
drains it at most ~30 times a second, so a fast reply never floods the event loop with repaints.
"""
from __future__ import annotations

import threading
import time
from dataclasses import replace

from PySide6.QtCore import QObject, QTimer, Signal

from engine.events import Finished, GenerationRequest, TextDelta
from engine.worker import EngineWorker, Generation

FLUSH_MS = 33  # ~30 updates a second


class _BufferedGeneration(Generation):
    """A Generation whose events wait in a list for the GUI thread's timer."""

    def __init__(self, request: GenerationRequest):
        super().__init__(request)
        self.lock = threading.Lock()
        self.pending: list = []
        self.read: tuple[int, int] | None = None  # the prompt's tokens read so far, of how many

    def prefill(self, done: int, total: int) -> None:  # on the engine thread
        self.read = (done, total)

    def put(self, item) -> None:  # on the engine thread
        with self.lock:
            self.pending.append(item)

    def take(self) -> list:
        with self.lock:
            items, self.pending = self.pending, []
        return items


class ChatSession(QObject):
    """One reply at a time through an EngineWorker; signals carry plain values."""

    sig_text_received = Signal(str)  # new text since the last signal (batched)
    sig_reasoning_received = Signal(str)  # new thinking since the last signal (batched)
    sig_reply_finished = Signal(object)  # engine.events.Finished
    sig_reply_failed = Signal(str)  # a request the engine refused (bad input, context overflow...)
    sig_prompt_read = Signal(int, int)  # tokens of the prompt read so far, of how many (long prompts)
    sig_reply_dropped = Signal()  # stopped while it waited for the model: it never began (no figures)

    def __init__(self, worker: EngineWorker | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.worker = worker  # the window sets the loaded model's worker here
        self._generation: _BufferedGeneration | None = None
        self._end = None  # the reply's last event, held until the engine is done with the request
        self._timer = QTimer(self)
        self._timer.setInterval(FLUSH_MS)
        self._timer.timeout.connect(self._flush)

    @property
    def busy(self) -> bool:
        return self._generation is not None

    def send(self, request: GenerationRequest) -> None:
        if self._generation is not None:
            raise RuntimeError("A reply is already being generated; stop it first.")
        if self.worker is None:
            raise RuntimeError("No model is loaded.")

        self._generation = _BufferedGeneration(request)
        self._generation.request = replace(request, on_prefill=self._generation.prefill)
        self._read_shown: tuple[int, int] | None = None
        self.worker.submit(self._generation)
        self._timer.start()

    def stop(self) -> None:
        """The engine stops within one step; the reply ends with reason 'cancelled'."""
        if self._generation is not None:
            self._generation.cancel()

    def wait(self, timeout: float) -> bool:
        """Deliver the reply's last events now (at exit, when the event loop will not run again); False if the
        engine did not finish within `timeout` seconds."""
        give_up = time.monotonic() + timeout
        while self._generation is not None and time.monotonic() < give_up:
            self._flush()
            if self._generation is not None:
                time.sleep(0.01)
        return self._generation is None

    def _flush(self) -> None:
        gen = self._generation
        if gen is None:
            return
        if gen.read is not None and gen.read != self._read_shown:
            self._read_shown = gen.read
            self.sig_prompt_read.emit(*gen.read)
        text, thought, done = [], [], False
        for item in gen.take():
            if isinstance(item, TextDelta):
                text.append(item.text)
                thought.append(item.reasoning)
            elif Generation.is_end(item):
                done = True
            else:  # Finished, or the exception the engine raised
                self._end = item
        if "".join(thought):
            self.sig_reasoning_received.emit("".join(thought))
        if text and "".join(text):
            self.sig_text_received.emit("".join(text))
        if done:  # not busy any more by the time listeners hear the end
            self._generation, end, self._end = None, self._end, None
            self._timer.stop()
            if isinstance(end, Finished):
                self.sig_reply_finished.emit(end)
            elif isinstance(end, BaseException):
                self.sig_reply_failed.emit(str(end))
            else:  # cancelled in the engine's queue: the engine ends it with no event (engine/worker.py)
                self.sig_reply_dropped.emit()
