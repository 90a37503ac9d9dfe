"""The window's side of the shared model: load and unload without blocking, and hear how it went."""
from __future__ import annotations

import time

from PySide6.QtCore import QObject, Signal

from app.model_host import ModelHost
from basics.errors import LanternError
from engine.worker import Worker


class ModelController(QObject):
    sig_model_loading = Signal(str)  # name
    sig_model_loaded = Signal(str, str, str)  # name, backend ("llamacpp (CPU)"), why it was chosen (and notes)
    sig_model_failed = Signal(str, str)  # name, what went wrong
    sig_model_unloaded = Signal()
    sig_switched_elsewhere = Signal(str)  # a request from another app (the endpoint) loaded this model
    _sig_ready = Signal(object, str, object)  # worker, name, future: from the engine thread to this one

    def __init__(self, host: ModelHost, parent=None):
        super().__init__(parent)
        self.host = host
        self.state = "none"  # none, loading, ready, failed
        self.loading_since = 0.0
        self.backend, self.reason, self.error = "", "", ""
        self._asked: str | None = None  # the model the window last chose
        self.chat_template = True  # whether the loaded model has one (no: a base model, made to continue text)
        self.thinking_controls = (False, False)  # whether its template reads enable_thinking, reasoning_effort
        self._sig_ready.connect(self._on_ready)
        host.subscribe(self._on_change)  # the endpoint may switch models too (from its own thread)

    @property
    def name(self) -> str | None:
        return self.host.name

    @property
    def worker(self) -> Worker | None:
        return self.host.worker

    def load(self, name: str) -> Worker:
        """Start loading `name` (returns at once; replies sent meanwhile wait for the load). A load refused before
        it starts (no server address for the remote backend) raises LanternError, and is told as a failed load."""
        self._asked = name
        try:
            return self.host.use(name)
        except LanternError as e:
            self.state, self.error = "failed", str(e)
            self.sig_model_failed.emit(name, str(e))
            raise

    def reload(self) -> None:
        self.host.reload()

    def unload(self) -> None:
        self.host.unload()

    def _on_change(self, name: str | None, worker: Worker | None) -> None:  # any thread
        if worker is None:
            self._sig_ready.emit(None, "", None)
            return
        self._sig_ready.emit(worker, name, None)  # "loading"
        worker.when_ready(lambda future: self._sig_ready.emit(worker, name, future))

    def _on_ready(self, worker, name: str, future) -> None:  # GUI thread
        if worker is None:
            self.state = "none"
            self.sig_model_unloaded.emit()
            return
        if worker is not self.host.worker:
            return  # an older load that was replaced
        if future is None:
            self.state, self.loading_since = "loading", time.monotonic()
            self.sig_model_loading.emit(name)
            if name != self._asked:  # not the window's choice: said, so the chat does not change model silently
                self._asked = name
                self.sig_switched_elsewhere.emit(name)
            return
        error = future.exception()
        if error is not None:
            self.state, self.error = "failed", str(error)
            self.sig_model_failed.emit(name, str(error))
            return
        engine = future.result()
        self.state = "ready"
        self.chat_template = getattr(engine, "has_chat_template", True)
        self.thinking_controls = getattr(engine, "thinking_controls", (False, False))
        self.backend = getattr(engine, "backend", "") or "remote"
        notes = list(getattr(engine, "notes", []))
        runtime = getattr(engine, "runtime", None)
        cache = getattr(runtime, "cache_bytes", 0)
        if cache:  # what the KV cache took, and how many conversations share it
            slots = getattr(runtime, "slots", 1)
            notes.append(f"KV cache {cache / 2 ** 20:,.0f} MiB" + (f", shared by {slots} slots." if slots > 1 else "."))
        self.reason = " ".join(_sentence(part) for part in [getattr(engine, "backend_reason", "") or "", *notes] if part)
        self.sig_model_loaded.emit(name, self.backend, self.reason)


def _sentence(text: str) -> str:
    """A part of the load's reason as a sentence: "… (2 cores)" then "KV cache …" read as one otherwise."""
    text = text.strip()
    return text if text.endswith((".", "!", "?", ":")) else text + "."
