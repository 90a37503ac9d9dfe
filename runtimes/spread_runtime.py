"""A model spread over this machine and helper machines, computed in a child process (runtimes/spread_child.py).

llama.cpp's RPC client aborts the whole process when a helper stops answering mid-pass, so the model never runs in
Lantern's own process: this proxy sends each runtime call to the child and brings back its result. The engine on
top is the same (KV reuse, prompt lookup, slots): it sees a runtime.

When a helper goes away the child dies; the call under way raises HelperLost, saying which helper is gone. The
next call plans the model again without it (`replan`, app/wiring.py) and starts a new child, whose cache is empty:
a cut back to a prefix the engine thinks is cached is refused (truncate returns False) until the engine starts
that sequence again, so nothing is computed on a cache that is not there.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Listener
from pathlib import Path
from typing import Callable, Sequence

from basics.errors import ModelLoadError
from machine.helpers import answers
from runtimes.llama_library import RuntimeFailure, check_gguf_file
from runtimes.llama_mtp import MtpUnavailable
from runtimes.runtime import LoadOptions
from runtimes.spread_child import FIGURES, SPREAD_ARG

START_TIMEOUT_S = 60.0  # the child connects back
LOAD_TIMEOUT_S = 3600.0  # a first load sends every tensor over the network: a large model on a slow link is slow


class HelperLost(RuntimeFailure):
    """A helper machine stopped answering while the model computed."""


class SpreadRuntime:
    """The Runtime interface (and llama.cpp's slots) of a model spread over `options.helpers`."""

    name = "llamacpp"
    parks_its_thread = False
    vision = None  # images are not sent to helpers (the plan says so)
    mtp = None

    def __init__(self, path: str | Path, options: LoadOptions,
                 replan: Callable[[frozenset[str]], LoadOptions] | None = None):
        """`replan(gone)`: the options to load with once the helpers in `gone` stopped answering (ModelLoadError
        where the model no longer fits)."""
        self.model_path = Path(path)
        check_gguf_file(self.model_path)  # the header checks, here: the child skips them
        self.options = options
        self._replan = replan
        self._lock = threading.Lock()
        self._conn = self._proc = None
        self._lost: frozenset[str] | None = None  # the helpers gone, once the child died
        self._stale: set[int] = set()  # sequences the engine still thinks are cached (after a new child started)
        self._pieces: dict[int, bytes] = {}
        self._start(options)

    # -- the child ------------------------------------------------------------------------------------------------

    def _start(self, options: LoadOptions) -> None:
        key = os.urandom(32)
        listener = Listener(("127.0.0.1", 0), authkey=key)
        self._log = tempfile.TemporaryFile()  # the child's stderr: an abort's reason is read back from it
        frozen = getattr(sys, "frozen", False)
        address = "%s:%d" % listener.address
        cmd = [sys.executable, SPREAD_ARG, address] if frozen else \
            [sys.executable, "-m", "runtimes.spread_child", address]
        env = {**os.environ, "GGML_NO_BACKTRACE": "1"}  # an abort prints its reason, not a debugger's backtrace
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log,
                                      env=env, cwd=None if frozen else str(Path(__file__).resolve().parent.parent))
        try:
            self._proc.stdin.write(key.hex().encode() + b"\n")
            self._proc.stdin.close()
            self._conn = self._accept(listener)
            fields = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)
                      if f.name not in ("on_progress", "on_stage")}
            self._conn.send((str(self.model_path), fields))
            if options.on_stage is not None and options.helpers:
                n = len(options.helpers)
                options.on_stage(f"sending its share to {n} helper machine{'s' * (n > 1)} (a helper keeps it in its "
                                 "cache: the next load there is quicker)")
            self._await_load(options)
        except BaseException:
            self._kill()
            raise
        finally:
            listener.close()

    def _accept(self, listener):
        got: list = []
        t = threading.Thread(target=lambda: got.append(listener.accept()), daemon=True)
        t.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while t.is_alive() and self._proc.poll() is None and time.monotonic() < deadline:
            t.join(0.05)
        if not got:
            raise ModelLoadError(f"The process that holds {self.model_path.name} did not start{self._reason()}.")
        return got[0]

    def _await_load(self, options: LoadOptions) -> None:
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while True:
            if not self._conn.poll(0.1):
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise ModelLoadError(self._load_failed())
                continue
            try:
                kind, value = self._conn.recv()
            except (EOFError, OSError):
                raise ModelLoadError(self._load_failed()) from None
            if kind == "progress":
                if options.on_progress is not None and _cancels(options.on_progress, value):
                    raise ModelLoadError(f"Loading {self.model_path.name} was cancelled.")
            elif kind == "failed":
                raise value
            elif kind == "ready":
                for name in FIGURES:
                    setattr(self, name, value[name])
                self.on_gpu = False
                return

    def _load_failed(self) -> str:
        gone = self._gone()
        if gone:
            return (f"{self.model_path.name} could not be loaded: helper {', '.join(sorted(gone))} stopped answering "
                    f"while its share was sent{self._reason()}.")
        return f"llama.cpp stopped while loading {self.model_path.name} over its helpers{self._reason()}."

    def _gone(self) -> frozenset[str]:
        return frozenset(e for e in self.options.helpers if not answers(e))

    def _reason(self) -> str:
        try:
            self._log.seek(0)
            lines = [line.strip() for line in self._log.read().decode("utf-8", "replace").splitlines() if line.strip()]
        except (OSError, ValueError):
            return ""
        said = [line for line in lines if "error" in line.lower() or "failed" in line.lower() or "RPC" in line]
        return f" ({said[-1][:200]})" if said else ""

    def _kill(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        if self._proc is not None:
            self._proc.wait()

    def _lose(self) -> HelperLost:
        """The child died mid-call: which helpers are gone, in words; the next call starts again without them."""
        self._proc.wait()
        gone = self._gone()
        self._lost = gone
        self._kill()
        if gone:
            return HelperLost(f"Helper {', '.join(sorted(gone))} stopped answering while the model computed, so this "
                              "reply ended here. The next message loads the model again without it (where it still "
                              "fits); the conversation is kept.")
        return HelperLost(f"The process that holds the model stopped{self._reason()}. The next message loads it again.")

    def _again(self) -> None:
        """Plan again without the helpers gone and start a new child; until that works, each call tries again (a
        helper may come back, or the model may fit without it later)."""
        options = self._replan(self._lost) if self._replan is not None else self.options
        self._start(options)
        self.options, self._lost = options, None
        self._stale = set(range(max(1, getattr(self, "slots", 1))))
        self._pieces.clear()

    def _call(self, name: str, *args, **kwargs):
        with self._lock:
            if self._lost is not None:
                self._again()
            if self._conn is None:
                raise RuntimeFailure("The model was unloaded.")
            try:
                self._conn.send((name, args, kwargs))
                kind, value = self._conn.recv()
            except (EOFError, OSError):
                raise self._lose() from None
        if kind == "error":
            raise value
        return value

    # -- the Runtime interface ------------------------------------------------------------------------------------

    @property
    def n_past(self) -> int:
        return self._call("n_past")

    def seq_past(self, seq: int) -> int:
        return self._call("seq_past", seq)

    def tokenize(self, text: str, *, add_bos: bool, parse_special: bool = True) -> list[int]:
        return self._call("tokenize", text, add_bos=add_bos, parse_special=parse_special)

    def token_bytes(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._call("token_bytes", token)
        return piece

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self._call("detokenize", list(tokens))

    def forward(self, tokens: Sequence[int], start: int, *, rows: Sequence[int] | None = None):
        self._stale.discard(0)
        return self._call("forward", list(tokens), start, rows=None if rows is None else list(rows))

    def forward_seqs(self, items):
        self._stale.difference_update(seq for seq, _, _ in items)
        return self._call("forward_seqs", [(s, list(t), None if r is None else list(r)) for s, t, r in items])

    def truncate(self, n_keep: int) -> bool:
        return self.truncate_seq(0, n_keep)

    def truncate_seq(self, seq: int, n_keep: int) -> bool:
        if n_keep > 0 and seq in self._stale:
            return False  # a new child holds nothing of what the engine thinks is cached
        return self._call("truncate_seq", seq, n_keep)

    def reset(self) -> None:
        self._call("reset")
        self._stale.clear()

    def clear_seq(self, seq: int) -> None:
        self._call("clear_seq", seq)
        self._stale.discard(seq)

    def copy_seq(self, src: int, dst: int, n_tokens: int) -> None:
        self._call("copy_seq", src, dst, n_tokens)

    def save_state(self):
        return self._call("save_state")

    def restore_state(self, data: bytes, n_tokens: int) -> None:
        self._call("restore_state", bytes(data), n_tokens)
        self._stale.discard(0)

    def save_seq(self, seq: int):
        return self._call("save_seq", seq)

    def restore_seq(self, seq: int, data: bytes, n_tokens: int) -> None:
        self._call("restore_seq", seq, bytes(data), n_tokens)
        self._stale.discard(seq)

    def mark_recurrent(self):
        return self._call("mark_recurrent")

    def back_to_mark(self, mark, n_keep: int) -> None:
        self._call("back_to_mark", bytes(mark), n_keep)

    def cells_used(self, *, without: int | None = None) -> int:
        return self._call("cells_used", without=without)

    def embed(self, inputs):
        return self._call("embed", [list(i) for i in inputs])

    def threads_in_use(self) -> int:
        return self._call("threads_in_use")

    def evaluate_image(self, seq: int, image) -> None:
        raise RuntimeFailure("Images are not sent to helper machines.")

    def start_mtp(self):
        raise MtpUnavailable("MTP heads do not draft for a model spread over helper machines.")

    def close(self) -> None:
        with self._lock:
            self._lost = None
            if self._conn is not None:
                try:
                    self._conn.close()  # the child frees the model and ends
                finally:
                    self._conn = None
            if self._proc is not None:
                try:
                    self._proc.wait(30)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()


def _cancels(on_progress, value: float) -> bool:
    try:
        return on_progress(float(value)) is False
    except Exception:
        return False
