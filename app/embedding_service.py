"""The embedding models by name, one loaded at a time on a thread of its own: the endpoint's `/v1/embeddings` and the
window's document search share this. Qt-free and HTTP-free."""
from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Callable

from runtimes.embedder import Embedder


class EmbeddingService:
    """The embedding models by name, one loaded at a time, owned by one thread."""

    def __init__(self, models: Callable[[], dict[str, Path]]):
        self._models = models
        self._jobs: queue.Queue = queue.Queue()
        self._name: str | None = None
        self._embedder = None
        self._thread = threading.Thread(target=self._loop, name="lantern-embed", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn, args = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as e:  # the request's error, raised where it awaits
                    future.set_exception(e)
        self._close()

    def known(self) -> dict[str, Path]:
        return self._models()

    def embed(self, name: str, inputs: list[str | list[int]]) -> Future:
        """A Future of (vectors, tokens read) for `inputs` on model `name` (a KeyError for an unknown name)."""
        path = self.known()[name]
        future: Future = Future()
        self._jobs.put((future, self._run, (name, path, inputs)))
        return future

    def run(self, name: str, fn: Callable) -> Future:
        """A Future of `fn(embedder)`, run on this service's thread with model `name` loaded (a KeyError for an
        unknown name)."""
        path = self.known()[name]
        future: Future = Future()
        self._jobs.put((future, self._with_model, (name, path, fn)))
        return future

    def _run(self, name: str, path: Path, inputs: list[str | list[int]]):
        def embed(embedder):
            tokens = [embedder.tokenize(i) if isinstance(i, str) else i for i in inputs]
            return embedder.embed(tokens), sum(len(t) for t in tokens)

        return self._with_model(name, path, embed)

    def _with_model(self, name: str, path: Path, fn: Callable):
        if self._name != name:
            if self._embedder is not None:
                self._embedder.close()
            self._embedder, self._name = None, None
            self._embedder, self._name = Embedder(path), name
        return fn(self._embedder)

    def close(self) -> None:
        self._jobs.put(None)  # after the jobs already queued
        self._thread.join()

    def _close(self) -> None:
        if self._embedder is not None:
            self._embedder.close()
        self._embedder = None
