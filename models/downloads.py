"""Pulls on a worker thread: the window starts one, shows its progress, and may cancel it."""
from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Callable

from models.hub import DownloadProgress, HubClient
from models.library import LocalModel


class Download:
    """One pull running on its own thread. `on_progress` is called on that thread; `result()` waits."""

    def __init__(self, client: HubClient, spec: str, *, name: str | None = None,
                 on_progress: Callable[[DownloadProgress], None] | None = None):
        self.spec = spec
        self.latest: DownloadProgress | None = None
        self._cancel = threading.Event()
        self._future: Future = Future()
        self._on_progress = on_progress
        self._thread = threading.Thread(target=self._run, args=(client, name), name=f"lantern-pull {spec}",
                                        daemon=True)
        self._thread.start()

    def _run(self, client: HubClient, name: str | None) -> None:
        try:
            self._future.set_result(client.pull(self.spec, name=name, on_progress=self._progress, cancel=self._cancel))
        except BaseException as e:  # handed to whoever waits: HubError, DownloadCancelled...
            self._future.set_exception(e)

    def _progress(self, p: DownloadProgress) -> None:
        self.latest = p
        if self._on_progress is not None:
            self._on_progress(p)

    def cancel(self) -> None:
        """Stop at the next block; the partial file stays, so a new pull of the same spec resumes."""
        self._cancel.set()

    def result(self, timeout: float | None = None) -> LocalModel:
        model = self._future.result(timeout)
        self._thread.join()
        return model

    @property
    def done(self) -> bool:
        return self._future.done()
