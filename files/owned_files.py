"""Files Lantern owns in its data folder: written whole or not at all, locked across processes, and
moved aside (never deleted) when they are found damaged, so Lantern starts anyway and nothing is lost.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import platformdirs
from filelock import FileLock

from basics.errors import LanternError

_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_notices: list[str] = []
_notice_lock = threading.Lock()
# Where a notice goes as it happens: the command line prints it; by default the window collects them.
on_notice: Callable[[str], None] | None = None


def cache_dir() -> Path:
    """Where Lantern keeps files it makes (assembled models). LANTERN_CACHE_DIR overrides it."""
    env = os.environ.get("LANTERN_CACHE_DIR")
    if env:
        return Path(env)

    return Path(platformdirs.user_cache_dir("lantern", appauthor=False))


class DiskFull(LanternError, OSError):
    """Also an OSError: code that handles a failed write handles this one (with a better message)."""


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in _FULL


def disk_full_error(where: Path) -> DiskFull:
    """"The disk is full (N MB free at PATH)": the one message every write that runs out of space gives."""
    folder = next((p for p in [where, *where.parents] if p.exists()), where)
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = 0
    return DiskFull(f"The disk is full ({free / 1e6:.0f} MB free at {folder}); free some space and try again.")


def atomic_write(path: Path, data: bytes | str) -> None:
    """Replace `path` with `data`: readers see the old file or the new one; a failure leaves no temporary file."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix + ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if is_disk_full(e):
            raise disk_full_error(path.parent) from None
        raise


def move_aside(path: Path, reason: str) -> Path:
    """Keep a damaged file as NAME.damaged-DATE beside it and tell the user once. Returns the new path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return target  # another process moved it first
    for extra in ("-wal", "-shm"):  # SQLite's companions go with their database
        side = path.with_name(path.name + extra)
        if side.exists():
            try:
                os.replace(side, target.with_name(target.name + extra))
            except OSError:
                pass
    notice(f"{path.name} was damaged ({reason}); it was kept as {target.name} and Lantern started with a fresh one.")
    return target


def notice(message: str) -> None:
    with _notice_lock:
        if message in _notices:
            return
        _notices.append(message)
    if on_notice is not None:
        on_notice(message)


def take_notices() -> list[str]:
    """The notices not yet shown (the window shows them once)."""
    with _notice_lock:
        out = list(_notices)
        _notices.clear()
    return out


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (filelock: flock, or msvcrt on Windows) and threads, held while the block
    runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # threads take a process-local lock first: filelock's own is reentrant per thread, and one thread's second
    # FileLock on the path must wait like another process would
    with _thread_lock(path), FileLock(str(path)):
        yield


_thread_locks: dict[str, threading.RLock] = {}
_thread_locks_guard = threading.Lock()


def _thread_lock(path: Path) -> threading.RLock:
    # flock is per open file: two threads of one process each opening the file would not exclude each other
    # on every platform, so threads take a process-local lock first.
    with _thread_locks_guard:
        return _thread_locks.setdefault(str(path), threading.RLock())
