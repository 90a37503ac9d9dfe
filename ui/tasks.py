"""Work off the GUI thread: a function runs on a pool thread, its result comes back as a signal.

After superqt's WorkerBase (a QRunnable whose result goes back through a QObject on the GUI thread), with one
such QObject for all tasks. Every task is tracked, so tests (and quitting) can wait.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

_running: set["Task"] = set()
log = logging.getLogger("lantern.ui")


class _Relay(QObject):
    """Hands every task's outcome to the GUI thread. One object for the application's life: a QObject per task
    (superqt's way) is freed wherever its last reference goes, which can be the pool thread while the GUI thread is
    still inside the queued call it sent, and PySide's receivers for its lambdas are then torn down from two threads
    at once (a segfault in libshiboken/libpyside)."""

    sig_finished = Signal(object, bool, object)  # the task, whether it succeeded, its result or exception

    def __init__(self):
        super().__init__()
        self.sig_finished.connect(self._deliver)  # queued: emitted on pool threads, this lives on the GUI thread

    @Slot(object, bool, object)
    def _deliver(self, task: "Task", ok: bool, value) -> None:
        _running.discard(task)
        callback = task.on_done if ok else task.on_failed
        if callback is not None:
            callback(value)
        elif not ok:
            log.error("A background task failed: %s", value)


_relay: _Relay | None = None


class Task(QRunnable):
    """A plain runnable (no QObject of its own): freeing it on any thread is safe."""

    def __init__(self, fn: Callable[[], Any], on_done=None, on_failed=None):
        super().__init__()
        self.setAutoDelete(False)
        self.fn, self.on_done, self.on_failed = fn, on_done, on_failed
        self.relay = _relay

    def run(self) -> None:  # on a pool thread
        try:
            result = self.fn()
        except BaseException as e:
            self._emit(False, e)
        else:
            self._emit(True, result)

    def _emit(self, ok: bool, value) -> None:
        try:
            self.relay.sig_finished.emit(self, ok, value)
        except RuntimeError:  # the application quit while this ran: nobody is left to tell
            pass


def run_task(fn: Callable[[], Any], on_done: Callable[[Any], None] | None = None,
             on_failed: Callable[[BaseException], None] | None = None) -> Task:
    """Run `fn()` on a pool thread; `on_done(result)` or `on_failed(exception)` run on the GUI thread."""
    global _relay
    if _relay is None:  # made here, on the GUI thread, so that its queued calls are delivered there
        _relay = _Relay()
    task = Task(fn, on_done, on_failed)
    _running.add(task)
    QThreadPool.globalInstance().start(task)
    return task


def tasks_running() -> int:
    """Tasks whose result has not been delivered yet."""
    return len(_running)


def wait_for_tasks(timeout_ms: int = 30_000) -> bool:
    return QThreadPool.globalInstance().waitForDone(timeout_ms)
