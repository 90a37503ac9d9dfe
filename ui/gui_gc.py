"""Python's cycle collector runs on the GUI thread only, while the window lives.

CPython collects cycles on whichever thread allocates past a threshold: a pool thread, the model's loader, the
endpoint's threads. A cycle that holds a Qt object (a lambda that names its widget, an unparented QObject) is then
freed there, and a Qt object freed off its own thread crashes in libshiboken or Qt at a random later moment: the
kind of crash no single run reproduces (pyqtgraph's GarbageCollector answers the same crash the same way). So
automatic collection is off while the window runs, and a timer on the GUI thread collects by the same thresholds.
"""
from __future__ import annotations

import gc

from shiboken6 import isValid

CHECK_MS = 500
_collector = None


def collect_due() -> int:
    """Collect the generations whose thresholds are passed, as CPython's automatic collection would; on this thread."""
    counts, thresholds = gc.get_count(), gc.get_threshold()
    if counts[0] <= thresholds[0]:
        return 0
    generation = 0
    while generation < 2 and counts[generation + 1] > thresholds[generation + 1]:
        generation += 1
    return gc.collect(generation)


def collect_on_gui_thread() -> None:
    """Turn automatic collection off and collect from a timer on this (the GUI) thread; once per application."""
    global _collector
    # deferred: Qt; conftest imports this module in runs without Qt
    from PySide6.QtCore import QCoreApplication, QTimer

    if _collector is not None and isValid(_collector):
        return
    app = QCoreApplication.instance()
    _collector = QTimer(app, interval=CHECK_MS)  # the application owns it: it lives exactly as long
    _collector.timeout.connect(collect_due)
    _collector.start()
    gc.disable()
