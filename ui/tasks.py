"""Work off the GUI thread: a function runs on a pool thread, its result comes back as a signal.

After superqt's WorkerBase: a QRunnable with a separate QObject for its signals, created on the GUI
thread so the signals are delivered there. Every task is tracked, so tests (and quitting) can wait.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

_running: set["Task"] = set()
log = logging.getLogger("lantern.ui")


class _Signals(QObject):
    sig_done = Signal(object)
    sig_failed = Signal(object)  # the exception


class Task(QRunnable):
    def __init__(self, fn: Callable[[], Any]):
        super().__init__()
        self.setAutoDelete(False)
        self.fn = fn
        self.signals = _Signals()

    def run(self) -> None:  # on a pool thread
        try:
            result = self.fn()
        except BaseException as e:
            self._emit(self.signals.sig_failed, e)
        else:
            self._emit(self.signals.sig_done, result)

    @staticmethod
    def _emit(signal, value) -> None:
        try:
            signal.emit(value)
        except RuntimeError:  # the application quit while this ran: nobody is left to tell
            pass


def run_task(fn: Callable[[], Any], on_done: Callable[[Any], None] | None = None,
             on_failed: Callable[[BaseException], None] | None = None) -> Task:
    """Run `fn()` on a pool thread; `on_done(result)` or `on_failed(exception)` run on the GUI thread."""
    task = Task(fn)

    def finish(callback, value):
        _running.discard(task)
        if callback is not None:
            callback(value)
        elif isinstance(value, BaseException):
            log.error("A background task failed: %s", value)

    task.signals.sig_done.connect(lambda r: finish(on_done, r))
    task.signals.sig_failed.connect(lambda e: finish(on_failed, e))
    _running.add(task)
    QThreadPool.globalInstance().start(task)
    return task


def tasks_running() -> int:
    """Tasks whose result has not been delivered yet."""
    return len(_running)


def wait_for_tasks(timeout_ms: int = 30_000) -> bool:
    return QThreadPool.globalInstance().waitForDone(timeout_ms)
