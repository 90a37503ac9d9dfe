"""Saved KV states of recent conversations, so going back to one does not compute it again."""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


@dataclass
class SavedState:
    tokens: tuple[int, ...]
    data: bytes | None  # None once spilled to disk
    path: Path | None = None
    size: int = 0


class StateCache:
    """Least-recently-used KV states keyed by their token ids, under a RAM byte budget.

    States pushed out of RAM go to `disk_dir` when one is given (under its own byte budget),
    otherwise they are dropped. A lookup returns the state sharing the longest prefix with a prompt.
    """

    def __init__(self, *, ram_bytes: int = 1 << 30, disk_dir: Path | None = None, disk_bytes: int = 4 << 30):
        self.ram_bytes, self.disk_bytes = ram_bytes, disk_bytes
        self.disk_dir = Path(disk_dir) if disk_dir else None
        self._entries: OrderedDict[tuple[int, ...], SavedState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def ram_used(self) -> int:
        return sum(e.size for e in self._entries.values() if e.data is not None)

    @property
    def disk_used(self) -> int:
        return sum(e.size for e in self._entries.values() if e.data is None)

    def put(self, tokens: Sequence[int], data: bytes, *, keep_prefixes: bool = False) -> None:
        """Keep `data`, the state after `tokens`. `keep_prefixes`: states of prefixes of `tokens` stay (a cache
        that cannot be cut back needs them: checkpoints)."""
        key = tuple(tokens)
        self._drop(key)
        # A state that is a prefix of this one is no longer worth its bytes (the longer one can be cut back).
        for other in [k for k in self._entries if len(k) < len(key) and key[: len(k)] == k and not keep_prefixes]:
            self._drop(other)
        if len(data) > self.ram_bytes and not self._can_spill(len(data)):
            return
        self._entries[key] = SavedState(key, data, size=len(data))
        self._enforce_budgets()

    def token_lists(self) -> list[tuple[int, ...]]:
        return list(self._entries)

    def best_match(self, prompt: Sequence[int], *, better_than: int = 0,
                   usable=None) -> tuple[int, SavedState] | None:
        """The saved state sharing the longest prefix with `prompt`, if longer than `better_than`
        (and, given `usable(tokens, n_shared)`, one it accepts)."""
        best, best_len = None, better_than
        for key, entry in self._entries.items():
            n = common_prefix_len(key, prompt)
            if n > best_len and (usable is None or usable(key, n)):
                best, best_len = entry, n
        return (best_len, best) if best is not None else None

    def load(self, entry: SavedState) -> bytes:
        """The state's bytes (read back from disk when spilled); marks it most recently used."""
        self._entries.move_to_end(entry.tokens)
        if entry.data is not None:
            return entry.data
        assert entry.path is not None
        return entry.path.read_bytes()

    def clear(self) -> None:
        for key in list(self._entries):
            self._drop(key)

    def _can_spill(self, size: int) -> bool:
        return self.disk_dir is not None and size <= self.disk_bytes

    def _enforce_budgets(self) -> None:
        for key in list(self._entries):  # oldest first
            if self.ram_used <= self.ram_bytes:
                break
            entry = self._entries[key]
            if entry.data is None:
                continue
            if self._can_spill(entry.size):
                self._spill(entry)
            else:
                self._drop(key)
        for key in list(self._entries):
            if self.disk_used <= self.disk_bytes:
                break
            if self._entries[key].data is None:
                self._drop(key)

    def _spill(self, entry: SavedState) -> None:
        assert self.disk_dir is not None and entry.data is not None
        self.disk_dir.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(repr(entry.tokens).encode()).hexdigest()[:32] + ".kv"
        fd, tmp = tempfile.mkstemp(dir=self.disk_dir, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(entry.data)
            os.replace(tmp, self.disk_dir / name)
        except OSError:
            Path(tmp).unlink(missing_ok=True)  # a full disk costs the saved state, nothing else
            self._drop(entry.tokens)
            return
        entry.path, entry.data = self.disk_dir / name, None

    def _drop(self, key: tuple[int, ...]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None and entry.path is not None:
            entry.path.unlink(missing_ok=True)


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    # Compare in blocks first: conversations share long prefixes.
    step = 256
    while i + step <= n and list(a[i : i + step]) == list(b[i : i + step]):
        i += step
    while i < n and a[i] == b[i]:
        i += 1
    return i
