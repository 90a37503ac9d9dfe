"""The starter model's weights under real chat templates of other families (written into test GGUFs), so each
family's tool-call format, reasoning tags and template quirks run end to end on a real model."""
from __future__ import annotations

import time
from pathlib import Path

import httpx
from real_templates import template
from test_untrusted_gguf import write_gguf_with_template

from app.server.api import ServerSettings
from app.server.run import LanternServer
from app.server.service import ModelService
from engine.engine import EngineOptions
from runtimes.runtime import LoadOptions

# name -> the real template it carries (None: the starter's own ChatML template, which takes no tools)
FAMILIES = {
    "smol-own": None,
    "smol-hermes": "Qwen-Qwen2.5-7B-Instruct",
    "smol-llama3": "meta-llama-Llama-3.1-8B-Instruct",
    "smol-mistral": "mistralai-Mistral-Nemo-Instruct-2407",
    "smol-mistral-args": "Mistral-Small-3.2-24B-Instruct-2506",
    "smol-qwen3-coder": "Qwen3-Coder",
    "smol-harmony": "openai-gpt-oss-120b",
    "smol-qwen3": "Qwen-Qwen3-0.6B",
    "smol-r1": "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B",
}


def family_models(starter: Path, folder: Path, names=FAMILIES) -> dict[str, Path]:
    out = {}
    for name in names:
        source = FAMILIES[name]
        if source is None:
            out[name] = starter
        else:
            out[name] = write_gguf_with_template(starter, folder / f"{name}.gguf", template(source))
    return out


def start_server(paths: dict[str, Path], *, n_ctx: int = 4096, **engine) -> LanternServer:
    """A server for these models (one loaded at a time; a request for another switches)."""
    from app.wiring import start_worker

    def open_worker(name: str):
        return start_worker(paths[name], options=LoadOptions(n_ctx=n_ctx),
                            engine_options=EngineOptions(**engine) if engine else None)

    first = next(iter(paths))
    service = ModelService(first, models=lambda: list(paths), open_worker=open_worker)
    server = LanternServer(service, ServerSettings(port=0)).start()
    deadline = time.monotonic() + 120
    root = server.base_url.removesuffix("/v1")
    while httpx.get(root + "/health").json()["status"] == "loading" and time.monotonic() < deadline:
        time.sleep(0.05)
    return server
