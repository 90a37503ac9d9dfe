"""The model behind the endpoint: one loaded model at a time, one bounded FIFO queue in front of it."""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import AsyncIterator, Callable

from app.wiring import start_worker
from basics.errors import LanternError
from engine.engine import EngineOptions
from engine.events import Event, GenerationRequest
from engine.state_cache import StateCache
from engine.worker import EngineWorker, Generation, retire
from runtimes.runtime import LoadOptions

log = logging.getLogger("lantern.server")


class ModelNotFound(LanternError):
    def __init__(self, name: str, known: list[str]):
        super().__init__(f"The model {name!r} does not exist here. Available: {', '.join(known)}.")


class ModelLoading(LanternError):
    """The model is still loading: retry shortly (503). `switched`: this very request started the load."""

    def __init__(self, message: str, *, switched: bool = False):
        super().__init__(message)
        self.switched = switched


class ModelFailed(LanternError):
    """The model failed to load (503 with the reason)."""


class QueueFull(LanternError):
    """Too many requests are waiting (429)."""


class AsyncGeneration(Generation):
    """A Generation read from an event loop: the engine thread hands events over with call_soon_threadsafe."""

    def __init__(self, request: GenerationRequest, loop: asyncio.AbstractEventLoop, on_done: Callable[[], None]):
        super().__init__(request)
        self._loop = loop
        self._queue: asyncio.Queue = asyncio.Queue()
        self._on_done = on_done

    def put(self, item) -> None:
        if self.is_end(item):
            self._on_done()
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the server's loop is gone (shutdown): nobody is listening
            pass

    async def events(self) -> AsyncIterator[Event]:
        while True:
            item = await self._queue.get()
            if self.is_end(item):
                return
            if isinstance(item, BaseException):
                raise item
            yield item


class ModelService:
    """Loads models by registry name (never by path) and runs requests on one engine thread.

    `open_worker(name)` starts an EngineWorker for a model; the default builds one with app.wiring.
    """

    def __init__(self, model: str, *, models: Callable[[], list[str]], max_queue: int = 16,
                 open_worker: Callable[[str], EngineWorker] | None = None, owns_workers: bool = True,
                 idle_unload_s: float | None = None):
        self._models = models
        self._open = open_worker or default_opener()
        # False when the window's ModelHost owns the workers: the service follows it (adopt) and closes none.
        self._owns = owns_workers
        self.max_queue = max_queue
        self._lock = threading.RLock()  # RLock: opening a model through the host calls adopt() back
        self._in_flight = 0
        self.dropped = 0  # requests whose client left while they were queued (never run)
        self.model = model
        self._worker: EngineWorker | None = None
        self._status = "loading"
        self._error = ""
        self._used = time.monotonic()  # the last request's start or end
        self._closed = threading.Event()
        self._idle_watch = None
        self._switch(model)
        if idle_unload_s:  # Ollama's keep_alive, LM Studio's TTL: the memory back while nobody asks
            self._idle_watch = threading.Thread(target=self._unload_when_idle, args=(idle_unload_s,),
                                                name="lantern-idle-unload", daemon=True)
            self._idle_watch.start()

    def _unload_when_idle(self, idle_s: float) -> None:
        while not self._closed.wait(min(idle_s / 4, 5.0)):
            with self._lock:
                if self._status != "ready" or self._in_flight or time.monotonic() - self._used < idle_s:
                    continue
                old, self._worker, self._status = self._worker, None, "unloaded"  # the name stays: it reloads
            log.info("Unloaded %s after %.0f s without requests", self.model, idle_s)
            if old is not None and self._owns:
                old.close()

    # -- models ---------------------------------------------------------------------------------

    def known_models(self) -> list[str]:
        return self._models()

    @property
    def status(self) -> str:
        return self._status

    def _switch(self, name: str) -> None:
        """Start loading `name`; the old worker finishes what it has queued, then frees its model."""
        with self._lock:
            if self._owns and self._worker is not None:  # freed first: the new model is fitted without it
                retire(self._worker)
                self._worker = None
            self._adopt(name, self._open(name))

    def adopt(self, name: str | None, worker: EngineWorker | None) -> None:
        """Serve `worker` (loaded or loading) from now on: the window switched models (None: unloaded)."""
        with self._lock:
            self._adopt(name, worker)

    def _adopt(self, name: str | None, worker: EngineWorker | None) -> None:
        if worker is self._worker and worker is not None:
            return
        old = self._worker
        self.model, self._worker, self._error = name, worker, ""
        self._status = "loading" if worker is not None else "unloaded"
        if worker is not None:
            threading.Thread(target=self._watch_load, args=(worker,), name="lantern-load-watch", daemon=True).start()
        if old is not None and self._owns:
            retire(old)

    def _watch_load(self, worker: EngineWorker) -> None:
        try:
            worker.wait_ready()
        except Exception as e:  # reported to every request until another model is asked for
            with self._lock:
                if worker is self._worker:
                    self._status, self._error = "failed", str(e)
            log.error("Loading %s failed: %s", self.model, e)
            return
        with self._lock:
            if worker is self._worker:
                self._status = "ready"

    async def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while self._status == "loading" and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)

    # -- requests -------------------------------------------------------------------------------

    def submit(self, name: str, request: GenerationRequest) -> AsyncGeneration:
        """Queue `request` for model `name`; raises ModelNotFound, ModelLoading, ModelFailed or QueueFull."""
        with self._lock:
            worker = self._ready(name)
            if self._in_flight >= self.max_queue:
                raise QueueFull(f"{self._in_flight} requests are already waiting; retry later.")
            self._in_flight += 1
            self._used = time.monotonic()
        gen = AsyncGeneration(request, asyncio.get_running_loop(), self._release)
        worker.submit(gen)
        return gen

    def count_prompt_tokens(self, name: str, request: GenerationRequest):
        """A Future of how many tokens `request`'s prompt is on model `name` (the same errors as submit)."""
        return self.call(name, lambda engine: engine.count_prompt_tokens(request))

    def call(self, name: str, fn):
        """An asyncio Future of fn(engine) on model `name`'s engine thread (the same errors as submit)."""
        with self._lock:
            worker = self._ready(name)
        return asyncio.wrap_future(worker.call(fn))

    def _ready(self, name: str) -> EngineWorker:
        """The worker of model `name`, loaded; a request for another model starts loading it (under the lock)."""
        known = self.known_models()
        if name not in known:
            raise ModelNotFound(name, known)
        switched = False
        if name == self.model and self._status == "unloaded" and self._worker is None:
            self._switch(name)  # unloaded while idle: loaded again for this request
            switched = True
        elif name != self.model:
            if self._in_flight:
                raise ModelLoading(f"The server is busy with {self.model}; ask for {name} again when it is done.")
            self._switch(name)
            switched = True
        if self._status == "loading":
            raise ModelLoading(f"{self.model} is still loading. Retry shortly.", switched=switched)
        if self._status == "failed" or self._worker is None:
            raise ModelFailed(f"{self.model} failed to load: {self._error}")
        return self._worker

    def _release(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._used = time.monotonic()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def engine_call(self, fn):
        """Run fn(engine) on the engine thread (figures, context size); a concurrent Future."""
        return self._worker.call(fn)

    def close(self) -> None:
        self._closed.set()
        if self._idle_watch is not None:
            self._idle_watch.join()
        if self._worker is not None and self._owns:
            self._worker.close()
        self._worker = None


def default_opener(*, backend: str = "auto", options: LoadOptions = LoadOptions(),
                   engine_options: EngineOptions | None = None,
                   state_cache: StateCache | None = None) -> Callable[[str], EngineWorker]:
    def open_worker(name: str) -> EngineWorker:
        return start_worker(name, backend=backend, options=options, engine_options=engine_options,
                            state_cache=state_cache)

    return open_worker
