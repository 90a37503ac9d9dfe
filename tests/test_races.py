"""Orders that must hold whatever the threads do (issue 32): requests in the order they were made while a model was
being planned, and the endpoint told of model switches in the order they happened."""
from __future__ import annotations

import threading
from concurrent.futures import Future

from engine.auto_worker import AutoWorker


class RecordingWorker:
    """A chosen worker that records the order jobs reach it; its first job runs `on_first` (a request made then)."""

    def __init__(self, on_first=None):
        self.order: list[str] = []
        self.on_first = on_first

    def call(self, fn) -> Future:
        self.order.append(fn.__name__)
        if len(self.order) == 1 and self.on_first:
            self.on_first()
        f: Future = Future()
        f.set_result(None)
        return f

    def when_ready(self, callback):
        f: Future = Future()
        f.set_result(self)
        callback(f)

    def close(self, timeout=30.0):
        pass


def job(name):
    def fn(engine):
        return None
    fn.__name__ = name
    return fn


def test_a_request_made_while_queued_ones_are_handed_on_does_not_overtake_them():
    chosen = threading.Event()
    late: list[threading.Thread] = []

    def request_now():  # a request made just as the queued ones are handed to the chosen worker
        t = threading.Thread(target=lambda: auto.call(job("late")))
        late.append(t)
        t.start()
        t.join(1.0)  # it may not get past the queued ones, however long it is given

    inner = RecordingWorker(on_first=request_now)

    def decide():
        chosen.wait(30)
        return inner

    auto = AutoWorker(decide)
    for name in ("first", "second", "third"):
        auto.call(job(name))
    chosen.set()
    auto.wait_ready(30)
    late[0].join(30)
    assert inner.order == ["first", "second", "third", "late"]


def test_listeners_never_hear_an_older_model_after_a_newer_one():
    from app.model_host import ModelHost

    class Worker:
        def __init__(self, name):
            self.name = name

        def close(self, timeout=30.0):
            pass

    host = ModelHost(Worker)
    heard: list[str | None] = []
    others: list[threading.Thread] = []

    def slow(name, worker):  # while the window hears of "a", another thread switches to "b"
        if name == "a" and not others:
            t = threading.Thread(target=host.use, args=("b",))
            others.append(t)
            t.start()
            t.join(1.0)

    host.subscribe(slow)
    host.subscribe(lambda name, worker: heard.append(name))
    host.use("a")
    others[0].join(30)
    assert host.name == "b" and heard[-1] == "b", heard
