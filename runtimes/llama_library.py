"""llama.cpp the library, shared by its runtime, vision, the load probe and the embedder: the backend started once,
its log kept per thread (quoted in errors, read for cache sizes), its errors, and the checks a file passes first."""
from __future__ import annotations

import ctypes
import logging
import os
import re
import threading
from collections import deque
from pathlib import Path

from basics.errors import LanternError, ModelLoadError
from files.gguf_check import read_checked_header

log = logging.getLogger("lantern.llamacpp")

_init_lock = threading.Lock()
_initialized = False
_CACHE_SIZE = re.compile(r"^(llama_kv_cache|llama_memory_recurrent): size = +([0-9.]+) MiB")
# llama.cpp logs a load's messages on the thread that loads, so each thread keeps its own: two loads at once (a chat
# model and the embedder) never quote each other's errors or count each other's caches.
_per_thread = threading.local()
_log_callback = None  # kept alive: C holds a pointer to it


def recent_log() -> deque[str]:
    """This thread's last messages from llama.cpp, quoted in load errors."""
    if not hasattr(_per_thread, "log"):
        _per_thread.log = deque(maxlen=20)
    return _per_thread.log


def cache_sizes() -> list[float]:
    """MiB, as llama.cpp reported each cache it allocated on this thread."""
    if not hasattr(_per_thread, "sizes"):
        _per_thread.sizes = []
    return _per_thread.sizes


class RuntimeFailure(LanternError):
    """llama.cpp reported an error while running the model."""


def init_backend() -> None:
    global _initialized, _log_callback
    # deferred: a broken llama.cpp build fails where a model loads (doctor reports it), not at import
    import llama_cpp

    with _init_lock:
        if _initialized:
            return

        @llama_cpp.llama_log_callback
        def on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            message = text.decode("utf-8", errors="replace").rstrip()
            if message:
                recent_log().append(message)
                size = _CACHE_SIZE.match(message)
                if size:
                    cache_sizes().append(float(size.group(2)))
                log.debug("%s", message)

        _log_callback = on_log
        llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        if cpu_has_amx():
            # llama-cpp-python's own Llama() (the embedder's) takes its defaults from here: the same AMX guard as ours
            # (see use_extra_bufts below)
            # deferred: a broken llama.cpp build fails where a model loads (doctor reports it), not at import
            import llama_cpp.llama_cpp as low

            defaults = low.llama_model_default_params

            def amx_safe_params():
                params = defaults()
                params.use_extra_bufts = False
                return params
            low.llama_model_default_params = amx_safe_params
        _initialized = True


# Snapshots of the recurrent state a hybrid model keeps so a rejected draft rolls back in one cut: drafts of up to 8
# tokens. Each costs one more copy of the state (Qwen3.5 9B: about 50 MiB), so fit counts them (models/info.py).
RECURRENT_SNAPSHOTS = 10
# The architectures llama.cpp keeps those snapshots for (llm_arch_supports_rs_rollback); others get none.
ROLLBACK_ARCHITECTURES = frozenset({"qwen35", "qwen35moe", "qwen4exp", "nemotron_h", "nemotron_h_moe", "lfm2",
                                    "lfm2moe", "kimi-k3", "deepseek4", "glm5-next", "bailingmoe3"})


def default_threads() -> int:
    try:
        import psutil

        return max(1, psutil.cpu_count(logical=False) or os.cpu_count() or 1)
    except ImportError:
        return max(1, os.cpu_count() or 1)


def cpu_has_amx() -> bool:
    try:
        return " amx_int8" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def check_gguf_file(path: Path, *, check_header: bool = True) -> None:
    """Reject what llama.cpp should never see: missing files, folders, non-GGUF data, out-of-range values."""
    if not path.exists():
        raise ModelLoadError(f"Model file not found: {path}")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a folder; a GGUF model is a single .gguf file.")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ModelLoadError(f"Cannot read {path}: {e.strerror}") from None
    if magic != b"GGUF":
        raise ModelLoadError(f"{path} is not a GGUF model file (it does not start with the GGUF signature).")
    if check_header:
        read_checked_header(path)  # every value llama.cpp would assert on, checked first


def log_hook():
    """The callback llama.cpp logs through (once the backend started): vision's mtmd logs through it too."""
    return _log_callback


def last_error() -> str:
    """The most telling of llama.cpp's recent messages (an "error ...: reason" line when there is one)."""
    lines = [m for m in recent_log() if m]
    errors = [m for m in lines if "error" in m.lower()]
    if errors:
        return errors[-1].split("error loading model: ", 1)[-1]
    return lines[-1] if lines else "no details from llama.cpp"
