"""The child process that holds a model spread over helper machines (runtimes/spread_runtime.py is its parent's
side). llama.cpp's RPC client aborts the process when a helper goes away mid-pass; here that ends only this child,
and the parent turns it into an error in words.

It connects back to the parent (the address in argv, the key on stdin), loads the model with its helpers, sends its
figures, then runs each call it is sent on the runtime, in order, until the parent closes the connection.
"""
from __future__ import annotations

import sys
from multiprocessing.connection import Client

from basics.errors import LanternError
from runtimes.llama_library import RuntimeFailure
from runtimes.llamacpp import LlamaCppRuntime
from runtimes.runtime import LoadOptions

SPREAD_ARG = "_spread-child"  # the installed app's hidden command (cli/main.py)
# What the parent's proxy mirrors once the model has loaded (the rest it asks for each time).
FIGURES = ("name", "can_truncate", "on_gpu", "n_ctx", "n_ctx_train", "n_vocab", "n_batch", "special",
           "chat_template", "sliding_window", "rollback_tokens", "slots", "n_threads", "cache_bytes")
CALLS = frozenset({"tokenize", "token_bytes", "detokenize", "forward", "forward_seqs", "truncate", "truncate_seq",
                   "clear_seq", "copy_seq", "save_seq", "restore_seq", "save_state", "restore_state",
                   "mark_recurrent", "back_to_mark", "reset", "seq_past", "cells_used", "embed", "threads_in_use",
                   "n_past"})


def child_main(address: str) -> int:
    key = bytes.fromhex(sys.stdin.readline().strip())
    host, port = address.rsplit(":", 1)
    conn = Client((host, int(port)), authkey=key)
    try:
        path, fields = conn.recv()
        options = LoadOptions(**fields, on_progress=lambda p: conn.send(("progress", p)))
        try:
            rt = LlamaCppRuntime(path, options, verify=False)
        except LanternError as e:
            conn.send(("failed", _error(e)))
            return 3
        conn.send(("ready", {name: getattr(rt, name, None) for name in FIGURES}))
        serve(conn, rt)
    except (EOFError, OSError):
        return 0  # the parent went away or closed: nothing is left to serve
    return 0


def serve(conn, rt) -> None:
    while True:
        try:
            name, args, kwargs = conn.recv()
        except EOFError:
            rt.close()
            return
        if name not in CALLS:
            conn.send(("error", RuntimeFailure(f"The spread model has no call {name!r}.")))
            continue
        try:
            value = getattr(rt, name)
            result = value(*args, **kwargs) if callable(value) else value
        except Exception as e:  # everything is the parent's to raise
            conn.send(("error", _error(e)))
            continue
        conn.send(("ok", result))


def _error(e: Exception) -> Exception:
    """`e` if it crosses a pipe as itself (the engine tells its kinds apart), else a RuntimeFailure saying it."""
    import pickle  # deferred: only for an error

    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return RuntimeFailure(str(e)) if isinstance(e, LanternError) else RuntimeFailure(f"{type(e).__name__}: {e}")


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
