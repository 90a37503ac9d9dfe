"""The one loaded model that the window and its endpoint share (Qt-free).

One Worker at a time: asking for another model starts its load on a new engine thread and lets
the old one finish what it has queued, then free its model. Listeners hear of every change.
"""
from __future__ import annotations

import threading
from typing import Callable

from engine.worker import Worker, retire

Listener = Callable[[str | None, Worker | None], None]


class ModelHost:
    def __init__(self, open_worker: Callable[[str], Worker]):
        self._open = open_worker
        self._lock = threading.Lock()
        self.name: str | None = None
        self.worker: Worker | None = None
        self._listeners: list[Listener] = []
        self._closing: list[threading.Thread] = []
        # Listeners hear changes one at a time and never an older one after a newer: two quick switches on two
        # threads would otherwise leave the endpoint on the retired worker.
        self._telling = threading.RLock()
        self._change = 0

    def subscribe(self, listener: Listener) -> None:
        """`listener(name, worker)` runs on the caller's thread after each load or unload."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def use(self, name: str) -> Worker:
        """The worker for `name`, loading it (off this thread) when another model or none is loaded."""
        with self._lock:
            if name == self.name and self.worker is not None:
                return self.worker
            self._retire(self.worker)  # first: the new model is fitted to the memory the old one frees
            self.worker, self.name = self._open(name), name
            worker, change = self.worker, self._next_change()
        self._tell(name, worker, change)
        return worker

    def reload(self) -> Worker | None:
        """Load the same model again (new load options)."""
        with self._lock:
            name, old = self.name, self.worker
            self.worker = self.name = None
            self._retire(old)
        return self.use(name) if name else None

    def unload(self) -> None:
        with self._lock:
            old, self.worker, self.name = self.worker, None, None
            self._retire(old)
            change = self._next_change()
        self._tell(None, None, change)

    def close(self, timeout: float = 30.0) -> None:
        """Unload and wait for every engine thread to end (at exit)."""
        self.unload()
        with self._lock:
            closing = list(self._closing)
        for t in closing:
            t.join(timeout)

    def _next_change(self) -> int:
        self._change += 1
        return self._change

    def _retire(self, old: Worker | None) -> None:
        """Called with the lock held."""
        if old is not None:  # queued replies finish first; the next model's plan waits for it (engine/worker.py)
            self._closing = [c for c in self._closing if c.is_alive()] + [retire(old)]

    def _tell(self, name: str | None, worker: Worker | None, change: int) -> None:
        with self._telling:
            with self._lock:
                if change != self._change:
                    return  # a newer change was made (and is told, or was told already)
            for listener in list(self._listeners):
                listener(name, worker)
