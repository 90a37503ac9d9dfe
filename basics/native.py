"""llama.cpp's libraries load before any other compiled extension, in every Lantern process.

On a CUDA build, a process that had loaded numpy and Lantern's other compiled dependencies before llama.cpp died
in its first model load: llama.cpp's tokenizer compiles its pre-tokenizer regexes with std::regex, and std::regex's
locale lookups then ran into C++ runtime code other than the one libllama was linked with (an NVIDIA H200, CUDA 13,
2026-12-04: SIGSEGV in unicode_regex_split, a libstdc++ locale symbol resolved from libggml-cuda.so; never with
llama.cpp loaded first). So each package's __init__ calls load_first(): whichever entry point a process starts from
(the window, the CLI, the server, the load-probe child, a benchmark, the tests), llama.cpp's libraries are mapped
before numpy or any other compiled module. tests/test_load_order.py checks every entry point in a fresh interpreter.
"""
from __future__ import annotations

import importlib.util
import os
import sys


def load_first() -> None:
    """Load llama-cpp-python's shared libraries now, if it is installed (cheap: nothing is initialised)."""
    if "llama_cpp.llama_cpp" in sys.modules or os.environ.get("LANTERN_NO_EARLY_LLAMA") == "1":
        return
    try:
        if importlib.util.find_spec("llama_cpp") is None:
            return
        import llama_cpp.llama_cpp  # noqa: F401  (dlopens libllama and its ggml libraries)
    except Exception:  # noqa: BLE001 (a broken build is reported where it is used: doctor, the first load)
        pass
