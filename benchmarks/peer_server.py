"""llama-cpp-python's own OpenAI server, with Lantern's AMX workaround (tests and benchmarks run it as a peer).

    .venv/bin/python -m benchmarks.peer_server --model PATH --port N [llama_cpp.server options]
"""
from __future__ import annotations

import importlib.util
import runpy
import sys

import llama_cpp.llama_cpp as low

from runtimes.llama_library import cpu_has_amx


SERVER_MODULES = ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")


def missing() -> list[str]:
    """The modules of llama-cpp-python's server extra this install lacks (`pip install 'lantern[bench]'`)."""
    return [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]


def main() -> None:
    default_params = low.llama_model_default_params

    def params():
        p = default_params()
        p.use_extra_bufts = not cpu_has_amx()  # Llama() segfaults on this Xeon otherwise (runtimes/llamacpp.py)
        return p

    low.llama_model_default_params = params
    sys.argv = ["llama_cpp.server", *sys.argv[1:]]
    runpy.run_module("llama_cpp.server", run_name="__main__")


if __name__ == "__main__":
    main()
