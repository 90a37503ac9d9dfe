"""The worker for a model whose slot count Lantern chooses (issue 20's default): several slots where llama.cpp can
batch conversations (recurrent and hybrid models included, each slot with its own state), one where it cannot (MLX
and embedding models). Which it is can only be known once
the model is planned (its file read, an MLX copy perhaps made), so that is decided on a thread of its own; requests
and calls made meanwhile wait for it, in order."""
from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Callable

from engine.worker import Generation, QueuedWorker, Worker, _fail


class AutoWorker(QueuedWorker):
    """A Worker that hands everything to the worker `decide()` returns (queued until it is chosen)."""

    def __init__(self, decide: Callable[[], Worker]):
        self._inner: Worker | None = None
        self._pending: list = []  # Generations and (fn, Future) calls made before the worker was chosen
        self._lock = threading.Lock()
        self._closed = False
        self._ready: Future = Future()
        self._thread = threading.Thread(target=self._choose, args=(decide,), name="lantern-choose-slots",
                                        daemon=True)
        self._thread.start()

    @property
    def inner(self) -> Worker | None:
        """The chosen worker (a SlotWorker or an EngineWorker), once chosen."""
        return self._inner

    def _choose(self, decide) -> None:
        try:
            inner = decide()
        except BaseException as e:
            with self._lock:
                self._closed = True
                pending, self._pending = self._pending, []
            self._ready.set_exception(e)
            for job in pending:
                _fail(job)
            return
        with self._lock:  # held while the queued jobs go on, so that none made meanwhile overtakes them
            self._inner = inner
            pending, self._pending = self._pending, []
            closed = self._closed
            for job in pending:
                self._forward(inner, job)
        inner.when_ready(self._loaded)
        if closed:
            inner.close()

    def _loaded(self, future: Future) -> None:
        error = future.exception()
        if error is not None:
            self._ready.set_exception(error)
        else:
            self._ready.set_result(future.result())

    @staticmethod
    def _forward(inner: Worker, job) -> None:
        if isinstance(job, Generation):
            inner.submit(job)
            return
        fn, future = job
        _chain(inner.call(fn), future)

    def _enqueue(self, job) -> None:
        with self._lock:
            inner = self._inner
            if inner is None and not self._closed:
                self._pending.append(job)
                return
            if inner is not None:
                self._forward(inner, job)  # under the lock: in order with the jobs queued before the choice
                return
        _fail(job)

    def close(self, timeout: float = 30.0) -> None:
        with self._lock:
            self._closed = True
            inner = self._inner
        if inner is None:
            self._thread.join(timeout)  # a choice under way closes what it made (above)
            inner = self._inner
        if inner is not None:
            inner.close(timeout)


def _chain(source: Future, target: Future) -> None:
    def done(f: Future) -> None:
        if not target.set_running_or_notify_cancel():
            return
        error = f.exception()
        if error is not None:
            target.set_exception(error)
        else:
            target.set_result(f.result())

    source.add_done_callback(done)
