"""What a model is, read from its own file: context length, kind (chat, embedding, or drafter) and capabilities (what
`GET /v1/models` says of it, and what the window shows)."""
from __future__ import annotations

import os
from functools import lru_cache

from basics.errors import LanternError
from models.info import describe_model
from models.library import ModelLibrary
from models.registry import BUILTIN_MODELS
from runtimes.llama_mtp import ASSISTANT_ARCH

# Encoder architectures: they embed text, they do not write it (others say so by pooling their tokens)
EMBEDDING_ARCHITECTURES = {"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "modern-bert",
                           "neo-bert", "t5encoder", "gemma-embedding"}
POOLING_NONE, POOLING_RANK = 0, 4


def registered_path(name: str):
    """The file of registered model `name` (built in or in the library); never a path taken from the name."""
    if name in BUILTIN_MODELS:
        return BUILTIN_MODELS[name].locate()
    local = ModelLibrary().find(name)
    if local is None:
        raise LanternError(f"No registered model {name!r}.")
    return local.path


def model_facts(name: str) -> dict:
    """Facts about registered model `name`; {} when it is not one or its file cannot be read."""
    try:
        return facts_of(registered_path(name))
    except (LanternError, OSError, ValueError):
        return {}


def facts_of(path) -> dict:
    """Facts about the model at `path` (read once per size and modification time)."""
    stat = os.stat(path)
    return dict(_facts(str(path), stat.st_size, stat.st_mtime_ns))


@lru_cache(maxsize=256)
def _facts(path: str, _size: int, _mtime_ns: int) -> tuple:
    info = describe_model(path)
    pools = info.pooling not in (POOLING_NONE, POOLING_RANK)  # Qwen3-Embedding is a qwen3 that pools its last token
    kind = "embedding" if info.architecture in EMBEDDING_ARCHITECTURES or pools else "chat"
    if info.architecture == ASSISTANT_ARCH:  # a Gemma 4 assistant: MTP heads that only draft for their model
        kind = "drafter"
    native = info.tool_format not in ("", "generic") and not info.tool_format.startswith("none")
    return (("context_length", info.n_ctx_train), ("kind", kind), ("architecture", info.architecture),
            ("quantization", info.quant), ("size_bytes", info.size_bytes), ("chat_template", info.chat_template),
            ("capabilities", {"tools": kind == "chat",  # every chat model: in its own format, or generic JSON
                              "tool_format": info.tool_format if native else "generic",
                              "reasoning": bool(info.reasoning), "vision": False}))
