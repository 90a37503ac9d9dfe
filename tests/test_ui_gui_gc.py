"""Qt objects in garbage cycles are freed on the GUI thread, never on a worker thread (ui/gui_gc.py, ui/tasks.py)."""
from __future__ import annotations

import gc
import threading
import weakref

import pytest

pytest.importorskip("pytestqt")


class Node:
    pass


def test_cycles_are_collected_on_the_gui_thread_only_while_the_window_runs(qtbot, make_window):
    from PySide6.QtCore import QObject

    make_window()
    threads = []

    def note(phase, _info):
        if phase == "start":
            threads.append(threading.current_thread().name)

    gc.callbacks.append(note)
    try:
        def churn():  # a worker making cyclic garbage: enough to start CPython's automatic collection many times
            for _ in range(100_000):
                node = Node()
                node.me = node

        worker = threading.Thread(target=churn, name="churn")
        worker.start()
        worker.join()
        assert "churn" not in threads

        holder = Node()  # a Qt object kept only by a garbage cycle
        holder.me, holder.qt = holder, QObject()
        gone = weakref.ref(holder)
        del holder
        qtbot.waitUntil(lambda: gone() is None, timeout=30_000)  # collected all the same, by the window's timer
        assert threads and set(threads) == {threading.main_thread().name}
    finally:
        gc.callbacks.remove(note)


def test_many_background_tasks_come_back_on_the_gui_thread(qtbot, make_window):
    from ui.tasks import run_task, tasks_running

    make_window()
    where, failed = [], []
    for i in range(2_000):
        run_task(lambda i=i: i, lambda r: where.append((r, threading.current_thread().name)),
                 failed.append)
    run_task(lambda: 1 / 0, None, failed.append)
    qtbot.waitUntil(lambda: tasks_running() == 0, timeout=60_000)
    assert sorted(r for r, _ in where) == list(range(2_000))
    assert {name for _, name in where} == {threading.main_thread().name}
    assert len(failed) == 1 and isinstance(failed[0], ZeroDivisionError)
