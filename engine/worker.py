"""One thread owns the model: the window and the server submit requests and read events back.

After mlx-lm's server (one generation thread fed by a queue, a reply queue per request)
and Anki's single-worker task manager.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from typing import Any, Callable, Iterator, Protocol, runtime_checkable

from basics.errors import ModelLoadError
from engine.engine import Engine
from engine.events import Event, Finished, GenerationRequest, TextDelta

_DONE = object()

# Workers being closed in the background: a model planned meanwhile waits for them, so that the free GPU memory it
# is fitted to is measured without the model that is leaving (a switch on a GPU would otherwise plan the new model
# into what the old one still holds, and put fewer layers on the GPU).
_retiring: set[threading.Event] = set()
_retiring_lock = threading.Lock()
RETIRE_WAIT_S = 60.0  # a switch waits this long for the old model's queued replies, then plans without it


def retire(worker) -> threading.Thread:
    """Close `worker` on a thread of its own (its queued replies finish first, then it frees its model)."""
    done = threading.Event()
    with _retiring_lock:
        _retiring.add(done)

    def close() -> None:
        try:
            worker.close()
        finally:
            with _retiring_lock:
                _retiring.discard(done)
            done.set()

    t = threading.Thread(target=close, name="lantern-unload", daemon=True)
    t.start()
    return t


PARKED_THREAD_NAME = "lantern-parked"


def park_thread() -> None:
    """End a thread that ran MLX by never ending it. MLX's Python module keeps thread-local values whose destructors
    take the GIL when the thread's OS part ends, which comes after `join()` returns; at the interpreter's exit that
    races with finalization, and the thread is then killed inside a destructor: "terminate called without an active
    exception", SIGABRT (issue 32, seen in 8 of 10 runs of `lantern generate --backend mlx` on a busy machine).
    A parked daemon thread waits on a lock without the GIL, so the process exits without running them. One per MLX
    model loaded, a few kB each."""
    threading.current_thread().name = PARKED_THREAD_NAME
    threading.Event().wait()


def wait_for_retired(timeout: float = RETIRE_WAIT_S) -> bool:
    """Wait until every worker retired so far has freed its model; False if one is still closing at `timeout`."""
    deadline = time.monotonic() + timeout
    with _retiring_lock:
        pending = list(_retiring)
    return all(e.wait(max(0.0, deadline - time.monotonic())) for e in pending)


class Generation:
    """A submitted request: iterate it for events; `cancel()` stops it within one step."""

    def __init__(self, request: GenerationRequest):
        self.request = request
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._cancel = threading.Event()
        self.created = time.monotonic()

    def run_on(self, engine: Engine) -> None:
        """Generate on `engine` here; the final figures say how long the request waited before it began."""
        queued_ms = (time.monotonic() - self.created) * 1000
        for event in engine.generate(self.request, cancel=self._cancel):
            if isinstance(event, Finished):
                event = replace(event, stats=replace(event.stats, queued_ms=round(queued_ms, 1)))
            self.put(event)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def __iter__(self) -> Iterator[Event]:
        while True:
            item = self._events.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def put(self, item) -> None:
        """Called on the engine thread with each event, an exception, or the end marker."""
        self._events.put(item)

    @staticmethod
    def is_end(item) -> bool:
        return item is _DONE

    def text(self) -> tuple[str, Finished]:
        """Wait for the whole reply: its text and its final event."""
        parts, final = [], None
        for event in self:
            if isinstance(event, TextDelta):
                parts.append(event.text)
            else:
                final = event
        assert final is not None
        return "".join(parts), final


@runtime_checkable
class Worker(Protocol):
    """A model on a thread of its own, as the window, the server and the command line hold it: EngineWorker (one
    conversation at a time), SlotWorker (several at once) and AutoWorker (either, chosen once the model is planned)."""

    def submit(self, request: GenerationRequest | Generation) -> Generation:
        """Queue a request (or a Generation of the caller's own kind, such as the server's async one)."""

    def call(self, fn: Callable[[Engine], Any]) -> Future:
        """Run `fn(engine)` on the model's thread, after the requests already queued."""

    def wait_ready(self, timeout: float | None = None) -> Engine:
        """Block until the model is loaded; re-raises a load error."""

    def when_ready(self, callback: Callable[[Future], None]) -> None:
        """`callback(future)` once the model has loaded or failed (now, if it has)."""

    def close(self, timeout: float = 30.0) -> None:
        """Let the queued work finish, then free the model."""


class QueuedWorker:
    """What every Worker shares: requests and calls become jobs, in order (`_enqueue`: a Generation, or a call's
    (fn, Future)), and `_ready` says when the model has loaded."""

    _ready: Future

    def wait_ready(self, timeout: float | None = None) -> Engine:
        return self._ready.result(timeout)

    def when_ready(self, callback: Callable[[Future], None]) -> None:
        self._ready.add_done_callback(callback)

    def submit(self, request: GenerationRequest | Generation) -> Generation:
        gen = request if isinstance(request, Generation) else Generation(request)
        self._enqueue(gen)
        return gen

    def call(self, fn: Callable[[Engine], Any]) -> Future:
        future: Future = Future()
        self._enqueue((fn, future))
        return future

    def _enqueue(self, job) -> None:
        raise NotImplementedError


class EngineWorker(QueuedWorker):
    """Runs every call into the engine on one thread, in submission order."""

    def __init__(self, make_engine: Callable[[], Engine]):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="lantern-engine", daemon=True)
        self._ready: Future = Future()
        self._make_engine = make_engine
        self._closed = False  # set under _lock with the queue's end mark: nothing is queued behind it
        self._lock = threading.Lock()
        self._finished = threading.Event()  # the model is freed (the thread may live on: park_thread)
        self._thread.start()

    def _enqueue(self, job) -> None:
        with self._lock:
            if not self._closed:
                self._jobs.put(job)
                return
        _fail(job)

    def close(self, timeout: float = 30.0) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._jobs.put(None)
        self._finished.wait(timeout)

    def _loop(self) -> None:
        try:
            engine = self._make_engine()
        except BaseException as e:  # reported to whoever waits, and to every request
            self._ready.set_exception(e)
            engine = None
        else:
            self._ready.set_result(engine)
        try:
            while (job := self._jobs.get()) is not None:
                if isinstance(job, Generation):
                    self._run(engine, job)
                else:
                    fn, fut = job
                    if fut.set_running_or_notify_cancel():
                        try:
                            fut.set_result(fn(engine))
                        except BaseException as e:
                            fut.set_exception(e)
        finally:
            with self._lock:
                self._closed = True
            # a remote engine has no runtime: nothing of its lives in this thread
            park = getattr(getattr(engine, "runtime", None), "parks_its_thread", False)
            if engine is not None:
                engine.close()
            while True:  # whatever is left (the loop ended early) ends with an error instead of waiting forever
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    _fail(job if isinstance(job, Generation) else job[1])
            engine = job = None
            self._finished.set()
            if park:
                park_thread()

    @staticmethod
    def _run(engine: Engine | None, gen: Generation) -> None:
        try:
            if engine is None:
                raise ModelLoadError("No model is loaded: it failed to load.")
            if gen.cancelled:  # its client left while it waited in the queue: the model never sees it
                return
            gen.run_on(engine)
        except Exception as e:
            gen.put(e)
        finally:
            gen.put(_DONE)


def _fail(job) -> None:
    """A request or call (a Generation, a Future, or a call's (fn, Future)) that came after the model was unloaded:
    it ends at once, saying so."""
    gone = ModelLoadError("The model was unloaded before this could run.")
    if isinstance(job, tuple):
        job = job[1]
    if isinstance(job, Generation):
        job.put(gone)
        job.put(_DONE)
    elif job.set_running_or_notify_cancel():
        job.set_exception(gone)
