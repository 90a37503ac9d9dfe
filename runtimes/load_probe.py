"""A model file Lantern has not loaded before is first loaded in a child process.

The header checks (files/gguf_check.py) refuse what they know llama.cpp aborts on; an abort that slips
past them (a GGML_ASSERT, a segfault in a tensor llama.cpp reads) kills only the child here and becomes a
clear message. Files that loaded are remembered by path, size, modification time and load options.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from basics.errors import ModelLoadError
from files.owned_files import atomic_write, cache_dir, file_lock
from runtimes.runtime import LoadOptions

PROBE_ARG = "_load-probe"  # the hidden command the child runs (cli/main.py and `python -m runtimes.load_probe_child`)
CLEAN_FAILURE = 3
TIMEOUT_S = 600.0
PROBE_N_CTX = 512
PROBE_N_CTX_IMAGES = 4096


def verify_in_child(path: Path, options: LoadOptions) -> None:
    """Load `path` with `options` once in a child process unless it loaded before; ModelLoadError if it fails."""
    key = _key(path, options)
    cache = _cache_file()
    if key in _read(cache):
        return
    # The child checks that the file loads and computes, not that a long context fits: with a small context it
    # needs little beyond the weights, which it frees before this process loads them (so a first load on a GPU
    # never holds two full copies of the cache).
    small = PROBE_N_CTX_IMAGES if options.projector else PROBE_N_CTX  # an image's tokens fit (LLaVA's are 576)
    spec = json.dumps({"path": str(path), "n_ctx": min(options.n_ctx or small, small),
                       "n_gpu_layers": options.n_gpu_layers,
                       "n_batch": min(options.n_batch, small), "flash_attn": options.flash_attn, "kv_cache_type": options.kv_cache_type,
                       "allow_context_beyond_training": options.allow_context_beyond_training,
                       "projector": options.projector or None,
                       # the MTP heads' graph runs only when they draft: the child drafts once with them
                       "load_mtp": options.load_mtp, "mtp_assistant": options.mtp_assistant})
    cmd = [sys.executable, PROBE_ARG, spec] if getattr(sys, "frozen", False) else \
        [sys.executable, "-m", "runtimes.load_probe_child", spec]
    env = {**os.environ, "LANTERN_IN_LOAD_PROBE": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd=str(Path(__file__).resolve().parent.parent) if not getattr(sys, "frozen", False)
                            else None)
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while True:
            try:  # reads both pipes while it waits: a chatty child would otherwise block on a full pipe
                out, err = proc.communicate(timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                pass  # retrying communicate loses no output
            if _listener_cancels(options.on_progress):
                raise ModelLoadError(f"Loading {path.name} was cancelled.")
            if time.monotonic() > deadline:
                raise ModelLoadError(f"llama.cpp took over {TIMEOUT_S:.0f} s to load {path.name}; Lantern refused it.")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    message = out.decode("utf-8", "replace").strip().splitlines()
    if proc.returncode == 0:
        _remember(cache, key)
        return
    if proc.returncode == CLEAN_FAILURE and message:
        raise ModelLoadError(message[-1])
    if options.mtp_assistant:  # the model loads alone (it did, as the library took it): the assistant is to blame
        raise ModelLoadError(f"{path.name} with the assistant {Path(options.mtp_assistant).name} made llama.cpp "
                             f"{_how(proc.returncode)} in a test process, so Lantern will not load them{_reason(err)}. "
                             "The assistant is damaged or not made for this model; choose another, or none.")
    if options.projector:  # the model alone loaded before (or loads now): the projector is what to blame
        raise ModelLoadError(f"{path.name} with the vision projector {Path(options.projector).name} made llama.cpp "
                             f"{_how(proc.returncode)} in a test process, so Lantern will not load them{_reason(err)}. "
                             "The projector is damaged or not made for this model; load the model without it.")
    raise ModelLoadError(f"{path.name} made llama.cpp {_how(proc.returncode)} while loading it in a test process, "
                         f"so Lantern will not load it{_reason(err)}. The file is damaged or not a model "
                         "llama.cpp can run.")


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"crash ({signal.Signals(-code).name})"
        except ValueError:
            return f"crash (signal {-code})"
    return f"exit with code {code}"


def _reason(err: bytes) -> str:
    lines = [line for line in err.decode("utf-8", "replace").splitlines() if "GGML_ASSERT" in line or "error" in line]
    return f" ({lines[-1].strip()[:200]})" if lines else ""


def _key(path: Path, options: LoadOptions) -> str:
    st = path.stat()
    key = [os.path.realpath(path), st.st_size, st.st_mtime_ns, options.n_ctx, options.n_gpu_layers,
           options.n_batch, options.flash_attn, options.allow_context_beyond_training, options.kv_cache_type]
    if options.projector:  # the projector too: a new or changed one is tried in the child first
        pst = Path(options.projector).stat()
        key += [os.path.realpath(options.projector), pst.st_size, pst.st_mtime_ns]
    if options.load_mtp:
        key.append("mtp")
    if options.mtp_assistant:  # and an assistant
        ast = Path(options.mtp_assistant).stat()
        key += [os.path.realpath(options.mtp_assistant), ast.st_size, ast.st_mtime_ns]
    return json.dumps(key)


def _cache_file() -> Path:
    return cache_dir() / "loaded-models.json"


def _read(cache: Path) -> set[str]:
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
        return {k for k in data if isinstance(k, str)} if isinstance(data, list) else set()
    except (OSError, ValueError, RecursionError):
        return set()  # a lost or damaged cache only costs one more test load


def _remember(cache: Path, key: str) -> None:
    try:
        with file_lock(cache.with_name(".loaded-models.lock")):
            keys = sorted(_read(cache) | {key})[-1000:]
            atomic_write(cache, json.dumps(keys))
    except Exception:  # noqa: BLE001 (a full disk here must not stop a load that worked)
        pass


def _listener_cancels(on_progress) -> bool:
    """Whether the load's progress listener asks to stop; a listener that fails does not stop the load (as in
    LlamaCppRuntime's own progress callback)."""
    if on_progress is None:
        return False
    try:
        return on_progress(0.0) is False
    except Exception:
        return False
