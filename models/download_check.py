"""A download checked as it is written: the sha256 of a growing file (hashed beside the download), a file longer
than the Hub announced refused, and the finished file checked against the sha256 (or git blob id) the Hub publishes."""
from __future__ import annotations

import hashlib
import queue
import threading
from pathlib import Path

from models.hub_errors import HubError


class HashingFile:
    """A file opened for appending that keeps the sha256 of everything in it (what was there, then each write).

    Hashing runs on a thread of its own (hashlib releases the GIL), beside the download rather than after it.
    """

    def __init__(self, f, *, limit: int):
        self._f = f
        self._limit = limit
        self._chunks: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._rehash(f.seek(0, 2))

    def _rehash(self, upto: int) -> None:
        self._finish()
        self._h = hashlib.sha256()
        self._f.seek(0)
        left = upto
        while left > 0 and (block := self._f.read(min(1 << 20, left))):
            self._h.update(block)
            left -= len(block)
        self._f.seek(upto)
        self._thread = threading.Thread(target=self._hash, name="lantern-sha256", daemon=True)
        self._thread.start()

    def _hash(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            self._h.update(chunk)

    def _finish(self) -> None:
        if self._thread is not None:
            self._chunks.put(None)
            self._thread.join()
            self._thread = None

    def write(self, data) -> int:
        if self._f.tell() + len(data) > self._limit:
            raise TooLong()
        self._chunks.put(bytes(data))
        return self._f.write(data)

    def tell(self) -> int:
        return self._f.tell()

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._f.seek(pos, whence)

    def truncate(self, size: int | None = None) -> int:
        n = self._f.truncate(size)
        self._rehash(self._f.tell() if size is None else size)  # the server ignored a Range: start over
        return n

    def flush(self) -> None:
        self._f.flush()

    def hexdigest(self) -> str:
        self._finish()
        return self._h.hexdigest()


class TooLong(Exception):
    """The server sent more bytes than the listing announced."""


def verify_download(path: Path, meta: dict, digest: str | None = None) -> bool:
    """Check a downloaded file against its published sha256, else its git blob id. False: nothing to check."""
    expected = meta.get("sha256")
    size = path.stat().st_size
    if meta.get("size") and size != meta["size"]:
        path.unlink(missing_ok=True)
        raise HubError(f"{path.name} is {size} bytes, the Hub says {meta['size']}: it was removed; pull again.")
    if expected:
        if digest is None:
            h = hashlib.sha256()
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            digest = h.hexdigest()
        if digest != expected:
            path.unlink(missing_ok=True)
            raise HubError(f"{path.name} does not match the sha256 the Hub publishes for it (a damaged download "
                           "or a changed file): it was removed and not registered; pull again.")
        return True
    if meta.get("blob_id"):  # a small file kept in git: its blob id is the sha1 of a header and the bytes
        h = hashlib.sha1(f"blob {size}\0".encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != meta["blob_id"]:
            path.unlink(missing_ok=True)
            raise HubError(f"{path.name} does not match the git blob id the Hub publishes for it: it was removed "
                           "and not registered; pull again.")
        return True
    return False
